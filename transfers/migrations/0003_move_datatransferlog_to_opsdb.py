"""DataTransferLog moved to opsdb (``opsdb.0005_datatransferlog``): state only, the table stays.

Its content type is renamed to the opsdb label so that existing log lines' generic relations,
admin history and the roles' permissions follow the model; then the role groups are re-synced.
"""

from django.db import migrations


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    old = ContentType.objects.filter(app_label="transfers", model="datatransferlog")
    if not ContentType.objects.filter(app_label="opsdb", model="datatransferlog").exists():
        old.update(app_label="opsdb")
    else:
        old.delete()


def move_content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="opsdb", model="datatransferlog").update(app_label="transfers")


def sync_roles(apps, schema_editor):
    from opsdb.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("transfers", "0002_copy_names"),
        ("opsdb", "0005_datatransferlog"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="DataTransferLog")],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
