"""The operators, scientists and workers groups, in every database."""

from django.db import migrations


def create_groups(apps, schema_editor):
    from opsdb.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("opsdb", "0001_initial"),
        ("transfers", "0001_initial"),
        ("staging", "0002_location_triggers"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_fsm_log", "__latest__"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
