"""Migration operations for indexes that Django's model indexes cannot express on every database."""

from django.db import migrations


def upper_prefix_index(table: str, column: str, name: str) -> migrations.RunPython:
    """An index on ``UPPER(column)`` with ``text_pattern_ops`` (PostgreSQL; nothing elsewhere).

    It serves the admin's case-insensitive searches ``iexact`` and ``istartswith``, which
    Django writes as ``UPPER(column::text) = UPPER(…)`` and ``… LIKE UPPER('q%')``. SQLite, the
    small embedded default, scans instead.
    """

    def create(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (UPPER("{column}"::text) text_pattern_ops)'
            )

    def drop(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')

    return migrations.RunPython(create, drop, elidable=False)
