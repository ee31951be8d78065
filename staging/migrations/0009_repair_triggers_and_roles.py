"""Archive transfers that repair a copy (``repair_of`` set) may read from any verified copy, at any site;
every archive transfer still writes into a LONG_TERM_ARCHIVE. The role groups get the fixity checks.

Recreates the trigger of migrations 0002/0007 (SQLite rebuilt the table when 0008 added a column,
dropping its triggers; PostgreSQL's must also fire when ``repair_of_id`` changes).
"""

from django.db import migrations

MESSAGE = ("an archive transfer goes from a BUFFER or PROCESSING location to the LONG_TERM_ARCHIVE location "
           "of the same site; a repair goes from any location into a LONG_TERM_ARCHIVE location")
LOC = "(SELECT {col} FROM opsdb_datalocation WHERE id = NEW.{fk})"
DESTINATION_BAD = f"{LOC.format(col='location_type', fk='destination_location_id')} <> 'LONG_TERM_ARCHIVE'"
ARCHIVE_BAD = (
    f"{LOC.format(col='location_type', fk='source_location_id')} NOT IN ('BUFFER', 'PROCESSING') "
    f"OR {DESTINATION_BAD} "
    f"OR {LOC.format(col='site_id', fk='source_location_id')} <> {LOC.format(col='site_id', fk='destination_location_id')}"
)
BAD = f"(NEW.repair_of_id IS NULL AND ({ARCHIVE_BAD})) OR (NEW.repair_of_id IS NOT NULL AND {DESTINATION_BAD})"
TABLE = "staging_longtermarchivetransfer"
COLS = "source_location_id, destination_location_id, repair_of_id"


def sqlite() -> list[str]:
    statements = []
    for op in ("INSERT", f"UPDATE OF {COLS}"):
        name = f"archive_locations_{op.split()[0].lower()}"
        statements += [f"DROP TRIGGER IF EXISTS {name};",
                       f"CREATE TRIGGER {name} BEFORE {op} ON {TABLE} WHEN {BAD} "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;"]
    return statements


def postgres() -> list[str]:
    return [f"""
CREATE OR REPLACE FUNCTION archive_locations_check() RETURNS trigger AS $$
BEGIN
  IF {BAD} THEN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS archive_locations ON {TABLE};
CREATE TRIGGER archive_locations BEFORE INSERT OR UPDATE OF {COLS} ON {TABLE}
  FOR EACH ROW EXECUTE FUNCTION archive_locations_check();"""]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": sqlite, "postgresql": postgres}.get(vendor, list)():
        schema_editor.execute(sql)


def sync_roles(apps, schema_editor):
    from opsdb.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [("staging", "0008_fixity")]

    # Going back, 0008 drops the column and 0007 puts its own trigger back.
    operations = [
        migrations.RunPython(create_triggers, migrations.RunPython.noop),
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
