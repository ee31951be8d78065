"""Indexes for the admin at 10^6–10^7 rows: prefix search on names, and the state log by time."""

from django.db import migrations

from opsdb.migration_ops import upper_prefix_index


class Migration(migrations.Migration):

    dependencies = [
        ('opsdb', '0006_api_tokens'),
        ('django_fsm_log', '0001_initial'),
    ]

    operations = [
        upper_prefix_index("opsdb_rawdatapackage", "name", "rawpackage_name_upper"),
        upper_prefix_index("opsdb_observation", "obs_id", "observation_obs_id_upper"),
        upper_prefix_index("opsdb_observation", "target_name", "observation_target_upper"),
        upper_prefix_index("opsdb_rawdatafile", "relative_path", "rawfile_path_upper"),
        upper_prefix_index("auth_user", "username", "user_username_upper"),
        upper_prefix_index("transfers_datatransferlog", "worker", "transferlog_worker_upper"),
        upper_prefix_index("transfers_datatransferlog", "message", "transferlog_message_upper"),
        # django-fsm-log's table (not ours to declare): the admin filters and sorts it by time.
        migrations.RunSQL(
            'CREATE INDEX IF NOT EXISTS "statelog_timestamp" ON "django_fsm_log_statelog" ("timestamp")',
            'DROP INDEX IF EXISTS "statelog_timestamp"',
        ),
    ]
