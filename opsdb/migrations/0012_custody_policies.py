

from django.db import migrations, models

from opsdb.migration_ops import sqlite_objects_kept

# SQLite rebuilds these tables to add columns: their triggers and hand-made indexes (the last-copy
# guard, the fixity index) and the staging triggers that read the locations are kept.
KEEP_BEFORE, KEEP_AFTER = sqlite_objects_kept("opsdb_datalocation", "opsdb_rawdatapackagecopy",
                                              "opsdb_rawdatafilecopy")


class Migration(migrations.Migration):

    dependencies = [
        ('opsdb', '0011_fixity_due_index'),
        ('staging', '0009_repair_triggers_and_roles'),  # its triggers exist (and are kept) by then
    ]

    operations = [
        KEEP_BEFORE,
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
        KEEP_AFTER,
    ]
