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


def column_statistics(table: str, columns: list[str], name: str) -> migrations.RunPython:
    """Multi-column MCV statistics (PostgreSQL; nothing elsewhere).

    For columns whose values go together (a copy's location and its scheduler flag: the copies
    at a site without an archive are never flagged), so that the planner does not multiply their
    selectivities and expect a large share of the table where there is none.
    """

    def create(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            cols = ", ".join(f'"{c}"' for c in columns)
            schema_editor.execute(f'CREATE STATISTICS IF NOT EXISTS "{name}" (mcv) ON {cols} FROM "{table}"')

    def drop(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'DROP STATISTICS IF EXISTS "{name}"')

    return migrations.RunPython(create, drop, elidable=False)
