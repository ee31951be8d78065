"""Indexes for the admin's filters on the log tables at 10^6–10^7 rows.

A filter on a value that is rare or absent (the transition "cancel", the state "PENDING", the level
"DEBUG") read the whole table twice: once for the capped count, once walking the list's order
looking for a hundred rows that are not there. With the filtered column first and the list's order
after it, both are index range scans.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('django_fsm_log', '0001_initial'),
        ('opsdb', '0014_location_deletion_draining'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='datatransferlog',
            index=models.Index(fields=['level', 'created_at', 'id'], name='transferlog_level_time'),
        ),
        # django-fsm-log's table (not ours to declare; see 0007): the state-log list is newest first by id.
        migrations.RunSQL(
            'CREATE INDEX IF NOT EXISTS "statelog_transition_id" ON "django_fsm_log_statelog" ("transition", "id")',
            'DROP INDEX IF EXISTS "statelog_transition_id"',
        ),
        migrations.RunSQL(
            'CREATE INDEX IF NOT EXISTS "statelog_state_id" ON "django_fsm_log_statelog" ("state", "id")',
            'DROP INDEX IF EXISTS "statelog_state_id"',
        ),
    ]
