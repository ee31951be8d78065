"""The physical copies' lifecycle (status is an FSM field) and the last-copy guard.

The guard is a trigger, so that no code path (a service, a bulk update, raw SQL, an admin action)
can move the last verified PRESENT copy of a raw data package into DELETION_IN_PROGRESS or
DELETED: such an update needs another copy of the package that is PRESENT with a verified
checksum. On PostgreSQL the trigger first locks the package row, so two transactions deleting two
copies of one package at once are serialised and the second sees the first.
"""

import django_fsm
from django.db import migrations

MESSAGE = "the last verified PRESENT copy of a raw data package cannot be deleted"
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
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    "DROP TRIGGER IF EXISTS rawpackagecopy_last_copy_guard;",
)

POSTGRES = (
    f"""
CREATE OR REPLACE FUNCTION rawpackagecopy_last_copy_guard() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM opsdb_rawdatapackage WHERE id = NEW.raw_package_id FOR NO KEY UPDATE;
  IF {NO_OTHER_COPY} THEN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'check_violation';
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


def create_guard(apps, schema_editor):
    if sql := _sql(schema_editor):
        schema_editor.execute(sql[0])


def drop_guard(apps, schema_editor):
    if sql := _sql(schema_editor):
        schema_editor.execute(sql[1])


STATUS = django_fsm.FSMField(
    choices=[("PRESENT", "Present"), ("DELETION_SCHEDULED", "Deletion scheduled"),
             ("DELETION_IN_PROGRESS", "Deletion in progress"), ("DELETED", "Deleted"),
             ("DELETION_FAILED", "Deletion failed"), ("MISMATCH", "Checksum mismatch"), ("MISSING", "Missing")],
    db_index=True, default="PRESENT", max_length=24, protected=True,
)


class Migration(migrations.Migration):
    dependencies = [
        ("opsdb", "0009_file_names_and_relative_paths"),
    ]

    operations = [
        migrations.AlterField(model_name="rawdatafilecopy", name="status", field=STATUS),
        migrations.AlterField(model_name="rawdatapackagecopy", name="status", field=STATUS),
        migrations.RunPython(create_guard, drop_guard, elidable=False),
    ]
