"""The open jobs by the MD5 of their last error, newest first: the admin's "last error" filter (opsdb.admin_errors)."""

from django.db import migrations

from opsdb.migration_ops import open_error_index


class Migration(migrations.Migration):

    dependencies = [
        ('transfers', '0015_transfer_repair_of'),
    ]

    operations = [
        open_error_index("transfers_datatransferpackage", "dtp_open_error"),
        open_error_index("transfers_datatransfer", "transfer_open_error"),
        open_error_index("transfers_datatransferunpack", "unpack_open_error", pk="transfer_id"),
    ]
