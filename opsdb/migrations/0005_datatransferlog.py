"""The job log (DataTransferLog) now belongs to the job machinery in opsdb; its table stays as it is.

State only: the model is created here in the state and deleted from ``transfers`` in
``transfers.0003_move_datatransferlog_to_opsdb``, which also moves its content type (and with it
the permissions the roles hold). No SQL runs on the table.
"""

import django.db.models.deletion
import django.db.models.functions.text
import django.db.models.lookups
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("opsdb", "0004_copy_names"),
        ("transfers", "0002_copy_names"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DataTransferLog",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("object_id", models.PositiveBigIntegerField()),
                        ("level", models.CharField(choices=[("DEBUG", "Debug"), ("INFO", "Info"),
                                                            ("WARNING", "Warning"), ("ERROR", "Error")],
                                                   default="INFO", max_length=10)),
                        ("message", models.CharField(max_length=500)),
                        ("log_path", models.CharField(blank=True, max_length=1024)),
                        ("worker", models.CharField(blank=True, max_length=200)),
                        ("attempt", models.PositiveIntegerField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("content_type", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                           to="contenttypes.contenttype")),
                    ],
                    options={
                        "db_table": "transfers_datatransferlog",
                        "ordering": ["-created_at"],
                        "indexes": [models.Index(fields=["content_type", "object_id"], name="transferlog_job")],
                        "constraints": [
                            models.CheckConstraint(
                                condition=django.db.models.lookups.LessThanOrEqual(
                                    django.db.models.functions.text.Length("message"), 500),
                                name="transferlog_message_short",
                                violation_error_message="Log messages are at most 500 characters; put details "
                                "in the log file."),
                            models.CheckConstraint(condition=models.Q(("level__in", ["DEBUG", "INFO", "WARNING",
                                                                                     "ERROR"])),
                                                   name="transferlog_level_valid"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
