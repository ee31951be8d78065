"""Database triggers for the rules that span tables and so cannot be CHECK constraints:

- an archive transfer goes from a BUFFER location to a LONG_TERM_ARCHIVE location of the same site;
- a staging job's destination is a PROCESSING location.
"""

from django.db import migrations

ARCHIVE_MESSAGE = "an archive transfer goes from a BUFFER location to the LONG_TERM_ARCHIVE location of the same site"
STAGING_MESSAGE = "the destination of a staging job must be a PROCESSING location"

LOC = "(SELECT {col} FROM opsdb_datalocation WHERE id = NEW.{fk})"
ARCHIVE_BAD = (
    f"{LOC.format(col='location_type', fk='source_location_id')} <> 'BUFFER' "
    f"OR {LOC.format(col='location_type', fk='destination_location_id')} <> 'LONG_TERM_ARCHIVE' "
    f"OR {LOC.format(col='site_id', fk='source_location_id')} <> {LOC.format(col='site_id', fk='destination_location_id')}"
)
STAGING_BAD = f"{LOC.format(col='location_type', fk='destination_location_id')} <> 'PROCESSING'"

SQLITE = [
    (f"CREATE TRIGGER {name}_{op.split()[0].lower()} BEFORE {op} ON {table} WHEN {cond} "
     f"BEGIN SELECT RAISE(ABORT, '{msg}'); END;", f"DROP TRIGGER IF EXISTS {name}_{op.split()[0].lower()};")
    for name, table, cond, msg, cols in (
        ("archive_locations", "staging_longtermarchivetransfer", ARCHIVE_BAD, ARCHIVE_MESSAGE,
         "source_location_id, destination_location_id"),
        ("staging_destination", "staging_stagingjob", STAGING_BAD, STAGING_MESSAGE, "destination_location_id"),
    )
    for op in ("INSERT", f"UPDATE OF {cols}")
]

POSTGRES = [
    (f"""
CREATE OR REPLACE FUNCTION {name}_check() RETURNS trigger AS $$
BEGIN
  IF {cond} THEN
    RAISE EXCEPTION '{msg}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OF {cols} ON {table}
  FOR EACH ROW EXECUTE FUNCTION {name}_check();
""", f"DROP TRIGGER IF EXISTS {name} ON {table}; DROP FUNCTION IF EXISTS {name}_check();")
    for name, table, cond, msg, cols in (
        ("archive_locations", "staging_longtermarchivetransfer", ARCHIVE_BAD, ARCHIVE_MESSAGE,
         "source_location_id, destination_location_id"),
        ("staging_destination", "staging_stagingjob", STAGING_BAD, STAGING_MESSAGE, "destination_location_id"),
    )
]


def _statements(schema_editor, forward: bool):
    vendor = schema_editor.connection.vendor
    pairs = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(vendor, [])
    return [create if forward else drop for create, drop in pairs]


def create_triggers(apps, schema_editor):
    for sql in _statements(schema_editor, forward=True):
        schema_editor.execute(sql)


def drop_triggers(apps, schema_editor):
    for sql in _statements(schema_editor, forward=False):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("staging", "0001_initial"), ("opsdb", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
