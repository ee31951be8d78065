

import django.db.models.deletion
import django.utils.timezone
import django_fsm
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('opsdb', '0012_custody_policies'),
        ('transfers', '0012_datatransferpackagecopy_deletion_failures'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='DeletionJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', django_fsm.FSMField(choices=[('PENDING', 'Pending'), ('ACTIVE', 'Active'), ('COMPLETED', 'Completed'), ('TRANSFERRED', 'Transferred'), ('UNPACKED', 'Unpacked'), ('READY', 'Ready'), ('FAILED', 'Failed'), ('CANCELLED', 'Cancelled')], db_index=True, default='PENDING', max_length=50, protected=True)),
                ('priority', models.IntegerField(default=0, help_text='Higher is claimed first.')),
                ('attempts', models.PositiveIntegerField(default=0, help_text='Failed attempts since it was created or last retried.')),
                ('attempts_total', models.PositiveIntegerField(default=0, help_text="Failed attempts in all, across operators' retries.", verbose_name='attempts in all')),
                ('next_attempt_at', models.DateTimeField(blank=True, help_text='Not claimable before this time.', null=True)),
                ('lease_token', models.CharField(blank=True, default='', editable=False, max_length=64)),
                ('lease_holder', models.CharField(blank=True, default='', help_text='Worker name.', max_length=200)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('claim_request_id', models.CharField(blank=True, default='', editable=False, help_text="The worker's id of the claim request that took the lease: a repeat of it gets this job again.", max_length=64)),
                ('claimed_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('bytes_done', models.BigIntegerField(blank=True, null=True)),
                ('resume_bytes', models.BigIntegerField(blank=True, help_text='Bytes the last unfinished attempt had moved (its last heartbeat): what the next attempt may resume from, as a worker finds it on disk.', null=True)),
                ('resumed_from', models.BigIntegerField(blank=True, help_text='Bytes the current (or last) attempt kept from an earlier one instead of moving them again.', null=True)),
                ('last_error', models.TextField(blank=True, default='')),
                ('log_path', models.CharField(blank=True, default='', help_text='Detailed log of the last attempt.', max_length=1024)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('reason', models.CharField(blank=True, help_text='Why these copies may go.', max_length=500)),
                ('size', models.BigIntegerField(default=0, help_text="Bytes the job frees (the copies' sizes).")),
                ('lease_user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('location', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deletion_jobs', to='opsdb.datalocation')),
            ],
            options={
                'ordering': ['-created_at'],
            },
            bases=(django_fsm.ConcurrentTransitionMixin, models.Model),
        ),
        migrations.CreateModel(
            name='DeletionItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('path', models.CharField(help_text="Relative to the location's base path.", max_length=1024)),
                ('size', models.BigIntegerField(default=0)),
                ('outcome', models.CharField(choices=[('WAITING', 'Waiting'), ('DELETED', 'Deleted'), ('GONE', 'Already gone'), ('FAILED', 'Failed'), ('KEPT', 'Kept (no longer to be deleted)')], default='WAITING', max_length=10)),
                ('error', models.CharField(blank=True, max_length=500)),
                ('file_copy', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='deletion_items', to='opsdb.rawdatafilecopy')),
                ('raw_package_copy', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='deletion_items', to='opsdb.rawdatapackagecopy')),
                ('transfer_package_copy', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='deletion_items', to='transfers.datatransferpackagecopy')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='custody.deletionjob')),
            ],
            options={
                'ordering': ['job_id', 'id'],
            },
        ),
        migrations.AddIndex(
            model_name='deletionjob',
            index=models.Index(fields=['status', 'next_attempt_at'], name='deletionjob_status_due'),
        ),
        migrations.AddIndex(
            model_name='deletionjob',
            index=models.Index(fields=['status', 'id'], name='deletionjob_status_id'),
        ),
        migrations.AddConstraint(
            model_name='deletionitem',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('file_copy__isnull', True), ('raw_package_copy__isnull', False), ('transfer_package_copy__isnull', True)), models.Q(('file_copy__isnull', True), ('raw_package_copy__isnull', True), ('transfer_package_copy__isnull', False)), models.Q(('file_copy__isnull', False), ('raw_package_copy__isnull', True), ('transfer_package_copy__isnull', True)), _connector='OR'), name='deletionitem_one_copy'),
        ),
        migrations.AddConstraint(
            model_name='deletionitem',
            constraint=models.CheckConstraint(condition=models.Q(('outcome__in', ['WAITING', 'DELETED', 'GONE', 'FAILED', 'KEPT'])), name='deletionitem_outcome_valid'),
        ),
        migrations.AddConstraint(
            model_name='deletionitem',
            constraint=models.UniqueConstraint(condition=models.Q(('outcome', 'WAITING'), ('raw_package_copy__isnull', False)), fields=('raw_package_copy',), name='deletionitem_raw_package_copy_waiting_once'),
        ),
        migrations.AddConstraint(
            model_name='deletionitem',
            constraint=models.UniqueConstraint(condition=models.Q(('outcome', 'WAITING'), ('transfer_package_copy__isnull', False)), fields=('transfer_package_copy',), name='deletionitem_transfer_package_copy_waiting_once'),
        ),
        migrations.AddConstraint(
            model_name='deletionitem',
            constraint=models.UniqueConstraint(condition=models.Q(('file_copy__isnull', False), ('outcome', 'WAITING')), fields=('file_copy',), name='deletionitem_file_copy_waiting_once'),
        ),
    ]
