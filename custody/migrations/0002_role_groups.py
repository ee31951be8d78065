"""The role groups get the permissions of the delete jobs (workers: view and change)."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from opsdb.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [("custody", "0001_initial"), ("opsdb", "0012_custody_policies")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
