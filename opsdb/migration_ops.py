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


# --- the last-copy guard (see opsdb/migrations/0010_copy_lifecycle.py) ----------------------------

LAST_COPY_MESSAGE = "the last verified PRESENT copy of a raw data package cannot be deleted"
TABLE = "opsdb_rawdatapackagecopy"
DELETING = "('DELETION_IN_PROGRESS', 'DELETED')"
NO_OTHER_COPY = (
    f"NOT EXISTS (SELECT 1 FROM {TABLE} other WHERE other.raw_package_id = NEW.raw_package_id "
    "AND other.id <> NEW.id AND other.status = 'PRESENT' AND other.checksum_verified <> '' "
    "AND other.verified_at IS NOT NULL)"
)

SQLITE = (
    f"CREATE TRIGGER rawpackagecopy_last_copy_guard BEFORE UPDATE OF status ON {TABLE} "
    f"WHEN NEW.status IN {DELETING} AND OLD.status <> NEW.status AND {NO_OTHER_COPY} "
    f"BEGIN SELECT RAISE(ABORT, '{LAST_COPY_MESSAGE}'); END;",
    "DROP TRIGGER IF EXISTS rawpackagecopy_last_copy_guard;",
)

POSTGRES = (
    f"""
CREATE OR REPLACE FUNCTION rawpackagecopy_last_copy_guard() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM opsdb_rawdatapackage WHERE id = NEW.raw_package_id FOR NO KEY UPDATE;
  IF {NO_OTHER_COPY} THEN
    RAISE EXCEPTION '{LAST_COPY_MESSAGE}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql VOLATILE;
CREATE TRIGGER rawpackagecopy_last_copy_guard BEFORE UPDATE OF status ON {TABLE}
  FOR EACH ROW WHEN (NEW.status IN {DELETING} AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION rawpackagecopy_last_copy_guard();
""",
    f"DROP TRIGGER IF EXISTS rawpackagecopy_last_copy_guard ON {TABLE}; "
    "DROP FUNCTION IF EXISTS rawpackagecopy_last_copy_guard();",
)


def _sql(schema_editor) -> tuple[str, str] | None:
    return {"sqlite": SQLITE, "postgresql": POSTGRES}.get(schema_editor.connection.vendor)


def last_copy_guard() -> migrations.RunPython:
    """The trigger that refuses to delete a raw package's last verified PRESENT copy (PostgreSQL, SQLite).

    Created again by any later migration that alters ``opsdb_rawdatapackagecopy``: SQLite rebuilds a
    table to alter it, which drops its triggers (it drops any old one first, so running it twice is fine).
    """

    def create(apps, schema_editor):
        if sql := _sql(schema_editor):
            schema_editor.execute(sql[1])
            schema_editor.execute(sql[0])

    def drop(apps, schema_editor):
        if sql := _sql(schema_editor):
            schema_editor.execute(sql[1])

    return migrations.RunPython(create, drop, elidable=False)


def sqlite_objects_kept(*tables: str) -> tuple[migrations.RunPython, migrations.RunPython]:
    """Two operations to put around operations that make SQLite rebuild ``tables`` (nothing elsewhere).

    SQLite alters a table by rebuilding it, which drops the triggers and hand-made indexes on it, and
    a rename fails on other tables' triggers that read it. The first operation saves every trigger
    and index on ``tables`` and every trigger that reads one of them, and drops those triggers; the
    second creates again whatever is missing, as it was.
    """
    saved: list[tuple[str, str]] = []

    def save(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                           "WHERE type IN ('trigger', 'index') AND sql IS NOT NULL")
            rows = cursor.fetchall()
        for kind, name, table, sql in rows:
            if table in tables or (kind == "trigger" and any(t in sql for t in tables)):
                saved.append((name, sql))
                if kind == "trigger":
                    schema_editor.execute(f'DROP TRIGGER IF EXISTS "{name}"')

    def restore(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master")
            existing = {row[0] for row in cursor.fetchall()}
        for name, sql in saved:
            if name not in existing:
                schema_editor.execute(sql)
        saved.clear()

    return (migrations.RunPython(save, restore, elidable=False),
            migrations.RunPython(restore, save, elidable=False))


def open_error_index(table: str, name: str, pk: str = "id") -> migrations.RunPython:
    """The open jobs (pending or failed) by the MD5 of their last error, in list order (PostgreSQL only).

    It serves the admin's "last error" filter (``opsdb.admin_errors``): the filtered list walks it in
    its order (newest first) and its capped count reads the index alone, where matching the error
    itself read every open job's row (10,000 rows at 10^6 jobs). The MD5 keeps the entries small:
    an error of up to 2,000 characters could exceed a B-tree entry's size.
    """

    def create(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (MD5("last_error"), "created_at", "{pk}") '
                "WHERE \"status\" IN ('PENDING', 'FAILED')"
            )

    def drop(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')

    return migrations.RunPython(create, drop, elidable=False)
