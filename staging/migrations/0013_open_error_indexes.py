"""The open jobs by the MD5 of their last error, newest first: the admin's "last error" filter (opsdb.admin_errors)."""

from django.db import migrations

from opsdb.migration_ops import open_error_index


class Migration(migrations.Migration):

    dependencies = [
        ('staging', '0012_archive_attention_index'),
    ]

    operations = [
        open_error_index("staging_longtermarchivetransfer", "archive_open_error"),
        open_error_index("staging_stagingjob", "staging_open_error"),
        open_error_index("staging_fixitycheck", "fixity_open_error"),
    ]
