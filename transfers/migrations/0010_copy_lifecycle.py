

import django_fsm
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('transfers', '0009_attempts_total'),
    ]

    operations = [
        migrations.AlterField(
            model_name='datatransferpackagecopy',
            name='status',
            field=django_fsm.FSMField(choices=[('PRESENT', 'Present'), ('DELETION_SCHEDULED', 'Deletion scheduled'), ('DELETION_IN_PROGRESS', 'Deletion in progress'), ('DELETED', 'Deleted'), ('DELETION_FAILED', 'Deletion failed'), ('MISMATCH', 'Checksum mismatch'), ('MISSING', 'Missing')], db_index=True, default='PRESENT', max_length=24, protected=True),
        ),
    ]
