"""The physical copies' lifecycle (status is an FSM field) and the last-copy guard.

The guard is a trigger, so that no code path (a service, a bulk update, raw SQL, an admin action)
can move the last verified PRESENT copy of a raw data package into DELETION_IN_PROGRESS or
DELETED: such an update needs another copy of the package that is PRESENT with a verified
checksum. On PostgreSQL the trigger first locks the package row, so two transactions deleting two
copies of one package at once are serialised and the second sees the first.
"""

import django_fsm
from django.db import migrations

from opsdb.migration_ops import last_copy_guard

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
        last_copy_guard(),
    ]
