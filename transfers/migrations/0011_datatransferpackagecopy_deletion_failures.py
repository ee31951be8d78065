

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('transfers', '0010_copy_lifecycle'),
    ]

    operations = [
        migrations.AddField(
            model_name='datatransferpackagecopy',
            name='deletion_failures',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Failed attempts to delete it since it was scheduled or last retried.'),
        ),
    ]
