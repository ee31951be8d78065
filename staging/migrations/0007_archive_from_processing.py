"""Archive transfers may also read from a PROCESSING location (data products coming home).

Replaces the trigger of migration 0002 that held an archive transfer to BUFFER → LONG_TERM_ARCHIVE
of one site: now BUFFER or PROCESSING → LONG_TERM_ARCHIVE of one site.
"""

from django.db import migrations

OLD_MESSAGE = "an archive transfer goes from a BUFFER location to the LONG_TERM_ARCHIVE location of the same site"
MESSAGE = ("an archive transfer goes from a BUFFER or PROCESSING location to the LONG_TERM_ARCHIVE location "
           "of the same site")
LOC = "(SELECT {col} FROM opsdb_datalocation WHERE id = NEW.{fk})"
SAME_SITE = f"{LOC.format(col='site_id', fk='source_location_id')} <> {LOC.format(col='site_id', fk='destination_location_id')}"
DESTINATION = f"{LOC.format(col='location_type', fk='destination_location_id')} <> 'LONG_TERM_ARCHIVE'"


def bad(sources: str) -> str:
    return f"{LOC.format(col='location_type', fk='source_location_id')} NOT IN ({sources}) OR {DESTINATION} OR {SAME_SITE}"


TABLE = "staging_longtermarchivetransfer"
COLS = "source_location_id, destination_location_id"


def sqlite(condition: str, message: str) -> list[str]:
    statements = []
    for op in ("INSERT", f"UPDATE OF {COLS}"):
        name = f"archive_locations_{op.split()[0].lower()}"
        statements += [f"DROP TRIGGER IF EXISTS {name};",
                       f"CREATE TRIGGER {name} BEFORE {op} ON {TABLE} WHEN {condition} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END;"]
    return statements


def postgres(condition: str, message: str) -> list[str]:
    # The trigger stays; only its function's body changes.
    return [f"""
CREATE OR REPLACE FUNCTION archive_locations_check() RETURNS trigger AS $$
BEGIN
  IF {condition} THEN
    RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;"""]


def _run(schema_editor, condition: str, message: str) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"sqlite": sqlite, "postgresql": postgres}.get(vendor, lambda c, m: [])(condition, message)
    for sql in statements:
        schema_editor.execute(sql)


def forward(apps, schema_editor):
    _run(schema_editor, bad("'BUFFER', 'PROCESSING'"), MESSAGE)


def backward(apps, schema_editor):
    _run(schema_editor, bad("'BUFFER'"), OLD_MESSAGE)


class Migration(migrations.Migration):
    dependencies = [("staging", "0006_attempts_total")]

    operations = [migrations.RunPython(forward, backward)]
