"""The usage changes lose their foreign key to the location (the fold drops changes of a location that is gone).

Django's flush (every transactional test's teardown) deletes the tables in no set order; on SQLite the
triggers fire for each deleted copy and could append a change after its location's rows were deleted,
failing the flush's COMMIT. SQLite drops a constraint by rebuilding the table, which would leave the copy
tables' triggers pointing at a dropped table: they are dropped first and made again after.
"""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

usage = import_module("operations.migrations.0003_location_usage")


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0003_location_usage"),
        ("opsdb", "0016_copy_location_indexes"),
    ]

    operations = [
        migrations.RunPython(usage.drop_triggers, usage.create_triggers),
        migrations.AlterField(
            model_name="locationusagechange",
            name="location",
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="+", to="opsdb.datalocation"),
        ),
        migrations.RunPython(usage.create_triggers, usage.drop_triggers),
    ]
