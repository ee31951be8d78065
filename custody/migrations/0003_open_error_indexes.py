"""The open jobs by the MD5 of their last error, newest first: the admin's "last error" filter (opsdb.admin_errors)."""

from django.db import migrations

from opsdb.migration_ops import open_error_index


class Migration(migrations.Migration):

    dependencies = [
        ('custody', '0002_role_groups'),
    ]

    operations = [
        open_error_index("custody_deletionjob", "deletionjob_open_error"),
    ]
