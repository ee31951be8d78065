"""The index fixity audits read: a location's PRESENT raw package copies, oldest-verified first.

Never-verified copies come first. PostgreSQL sorts NULLs last in ascending order unless told, and
SQLite sorts them first but refuses ``NULLS FIRST`` in an index, so the statement is per database.
"""

from django.db import migrations

TABLE = "opsdb_rawdatapackagecopy"
NAME = "rawpackagecopy_fixity_due"
COLUMNS = {"postgresql": "location_id, verified_at ASC NULLS FIRST, id", "sqlite": "location_id, verified_at, id"}


def create(apps, schema_editor):
    columns = COLUMNS.get(schema_editor.connection.vendor)
    if columns:
        schema_editor.execute(f"CREATE INDEX {NAME} ON {TABLE} ({columns}) WHERE status = 'PRESENT'")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("opsdb", "0010_copy_lifecycle")]

    operations = [migrations.RunPython(create, drop)]
