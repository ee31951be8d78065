

from django.db import migrations, models

from importlib import import_module

from opsdb.migration_ops import last_copy_guard


def _staging_triggers(schema_editor, *, create: bool) -> None:
    """SQLite rebuilds opsdb_datalocation to add columns; the staging triggers that read it must be
    dropped first (a rename checks them) and created again after."""
    if schema_editor.connection.vendor != "sqlite":
        return
    triggers = import_module("staging.migrations.0002_location_triggers")
    for create_sql, drop_sql in triggers.SQLITE:
        schema_editor.execute(drop_sql)
        if create:
            schema_editor.execute(create_sql)


def drop_staging_triggers(apps, schema_editor):
    _staging_triggers(schema_editor, create=False)


def create_staging_triggers(apps, schema_editor):
    _staging_triggers(schema_editor, create=True)


class Migration(migrations.Migration):

    dependencies = [
        ('opsdb', '0010_copy_lifecycle'),
        ('staging', '0006_attempts_total'),  # its triggers exist (and are made again) by then
    ]

    operations = [
        migrations.RunPython(drop_staging_triggers, create_staging_triggers, elidable=False),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_enabled',
            field=models.BooleanField(default=True, help_text="Operators' switch: off, nothing here is scheduled for deletion nor deleted."),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_failures_recent',
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_last_error',
            field=models.CharField(blank=True, default='', editable=False, max_length=500),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_paused_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_paused_reason',
            field=models.CharField(blank=True, default='', help_text='Set when deletion paused itself here (too many failures); clear it to resume.', max_length=500),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='deletion_policy',
            field=models.CharField(choices=[('NEVER', 'Never (archives)'), ('WHEN_SAFE', 'As soon as it is safe'), ('UNDER_PRESSURE', 'When space is short (keep archived data as a cache)')], default='NEVER', help_text='NEVER for archives; WHEN_SAFE empties a buffer as soon as its data is archived; UNDER_PRESSURE keeps archived data until the high watermark of the capacity is passed.', max_length=20),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='high_watermark_percent',
            field=models.PositiveSmallIntegerField(default=80, help_text='UNDER_PRESSURE: deletion starts when the copies here use more than this % of capacity.'),
        ),
        migrations.AddField(
            model_name='datalocation',
            name='low_watermark_percent',
            field=models.PositiveSmallIntegerField(default=70, help_text='UNDER_PRESSURE: … and stops once they use no more than this %.'),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='deletion_enabled',
            field=models.BooleanField(default=True, help_text="Operators' switch: off, nothing here is scheduled for deletion nor deleted."),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='deletion_paused_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='deletion_paused_reason',
            field=models.CharField(blank=True, default='', help_text='Set when deletion paused itself here (too many failures); clear it to resume.', max_length=500),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='deletion_policy',
            field=models.CharField(choices=[('NEVER', 'Never (archives)'), ('WHEN_SAFE', 'As soon as it is safe'), ('UNDER_PRESSURE', 'When space is short (keep archived data as a cache)')], default='NEVER', help_text='NEVER for archives; WHEN_SAFE empties a buffer as soon as its data is archived; UNDER_PRESSURE keeps archived data until the high watermark of the capacity is passed.', max_length=20),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='high_watermark_percent',
            field=models.PositiveSmallIntegerField(default=80, help_text='UNDER_PRESSURE: deletion starts when the copies here use more than this % of capacity.'),
        ),
        migrations.AddField(
            model_name='historicaldatalocation',
            name='low_watermark_percent',
            field=models.PositiveSmallIntegerField(default=70, help_text='UNDER_PRESSURE: … and stops once they use no more than this %.'),
        ),
        migrations.AddField(
            model_name='rawdatafilecopy',
            name='deletion_failures',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Failed attempts to delete it since it was scheduled or last retried.'),
        ),
        migrations.AddField(
            model_name='rawdatapackagecopy',
            name='deletion_failures',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Failed attempts to delete it since it was scheduled or last retried.'),
        ),
        migrations.AddConstraint(
            model_name='datalocation',
            constraint=models.CheckConstraint(condition=models.Q(('deletion_policy__in', ['NEVER', 'WHEN_SAFE', 'UNDER_PRESSURE'])), name='location_deletion_policy_valid'),
        ),
        migrations.AddConstraint(
            model_name='datalocation',
            constraint=models.CheckConstraint(condition=models.Q(('high_watermark_percent__lte', 100), ('low_watermark_percent__lt', models.F('high_watermark_percent'))), name='location_watermarks_ordered', violation_error_message='The low watermark must be below the high watermark, which is at most 100 %.'),
        ),
        # SQLite rebuilt the copy table to add a column, which dropped the trigger.
        last_copy_guard(),
        migrations.RunPython(create_staging_triggers, drop_staging_triggers, elidable=False),
    ]
