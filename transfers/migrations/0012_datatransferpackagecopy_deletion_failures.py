"""A transfer package copy counts its failed deletions (the deletion pass backs off on them)."""

from django.db import migrations, models

from opsdb.migration_ops import sqlite_objects_kept

KEEP_BEFORE, KEEP_AFTER = sqlite_objects_kept("transfers_datatransferpackagecopy")


class Migration(migrations.Migration):

    dependencies = [
        ('transfers', '0011_partial_data_indexes'),
    ]

    operations = [
        KEEP_BEFORE,
        migrations.AddField(
            model_name='datatransferpackagecopy',
            name='deletion_failures',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Failed attempts to delete it since it was scheduled or last retried.'),
        ),
        KEEP_AFTER,
    ]
