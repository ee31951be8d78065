"""Operators manage accounts in the admin only within what they themselves may do (no escalation)."""

import pytest
from django.contrib.auth.models import Group, Permission, User

from tests import factories as f

pytestmark = pytest.mark.django_db


def change_form(user: User, **changes) -> dict:
    """The POST of the admin's user change form as a browser sends it, with ``changes`` applied."""
    data = {
        "username": user.username, "first_name": user.first_name, "last_name": user.last_name,
        "email": user.email, "is_active": "on", "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [], "last_login_0": "", "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"), "date_joined_1": "00:00:00",
    }
    if user.is_staff:
        data["is_staff"] = "on"
    data.update(changes)
    return data


def admins_group() -> Group:
    """A group holding a permission operators lack (deleting accounts)."""
    group = Group.objects.create(name="account-admins")
    group.permissions.add(Permission.objects.get(content_type__app_label="auth", codename="delete_user"))
    return group


def test_operator_cannot_make_itself_superuser(client):
    me = f.operator()
    client.force_login(me)

    client.post(f"/admin/auth/user/{me.pk}/change/", change_form(me, is_superuser="on"))

    me.refresh_from_db()
    assert me.is_superuser is False


def test_operator_cannot_join_a_group_with_permissions_it_lacks(client):
    me, group = f.operator(), admins_group()
    client.force_login(me)

    response = client.post(f"/admin/auth/user/{me.pk}/change/",
                           change_form(me, groups=[*me.groups.values_list("pk", flat=True), group.pk]))

    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert list(me.groups.values_list("name", flat=True)) == ["operators"]


def test_operator_cannot_grant_itself_a_permission_it_lacks(client):
    me = f.operator()
    delete_user = Permission.objects.get(content_type__app_label="auth", codename="delete_user")
    client.force_login(me)

    client.post(f"/admin/auth/user/{me.pk}/change/", change_form(me, user_permissions=[delete_user.pk]))

    assert me.user_permissions.count() == 0
    assert User.objects.get(pk=me.pk).has_perm("auth.delete_user") is False


def test_operator_cannot_change_a_superusers_password_or_flags(client):
    me = f.operator()
    root = f.UserFactory(username="root", is_staff=True, is_superuser=True)
    old_hash = root.password
    client.force_login(me)

    password_page = client.post(f"/admin/auth/user/{root.pk}/password/",
                                {"password1": "taken-over-123!", "password2": "taken-over-123!"})
    client.post(f"/admin/auth/user/{root.pk}/change/", change_form(root, is_active=""))

    root.refresh_from_db()
    assert password_page.status_code == 403
    assert (root.password, root.is_active, root.is_superuser) == (old_hash, True, True)


def test_operator_cannot_change_an_account_that_may_do_more(client):
    me = f.operator()
    stronger = f.UserFactory(username="stronger", is_staff=True)
    stronger.groups.add(admins_group())
    client.force_login(me)

    response = client.post(f"/admin/auth/user/{stronger.pk}/change/", change_form(stronger, email="me@evil.org"))

    stronger.refresh_from_db()
    assert response.status_code == 403
    assert stronger.email == "stronger@example.org"


def test_operator_still_manages_scientists_within_its_reach(client):
    me, newcomer = f.operator(), f.UserFactory(username="newcomer")
    scientists = Group.objects.get(name="scientists")
    client.force_login(me)

    response = client.post(f"/admin/auth/user/{newcomer.pk}/change/", change_form(newcomer, groups=[scientists.pk]))

    assert response.status_code == 302
    assert list(newcomer.groups.values_list("name", flat=True)) == ["scientists"]


def test_operator_cannot_edit_groups(client):
    client.force_login(f.operator())
    group = Group.objects.get(name="operators")

    response = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "operators", "permissions": []})

    assert response.status_code == 403
    assert group.permissions.count() > 0


def test_group_editor_without_superuser_offers_only_its_own_permissions(client):
    editor = f.UserFactory(username="group-editor", is_staff=True)
    grants = Permission.objects.filter(content_type__app_label="auth", codename__in=["view_group", "change_group"])
    editor.user_permissions.add(*grants)
    small = Group.objects.create(name="small")
    delete_user = Permission.objects.get(content_type__app_label="auth", codename="delete_user")
    client.force_login(editor)

    response = client.post(f"/admin/auth/group/{small.pk}/change/", {"name": "small", "permissions": [delete_user.pk]})

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert small.permissions.count() == 0


def test_syncing_role_groups_leaves_the_live_app_registry_alone(db):
    """A cleared models module makes later flushes skip content types (stale ids, FK failures)."""
    from django.apps import apps

    from opsdb.roles import sync_role_groups

    before = {config.label: config.models_module for config in apps.get_app_configs()}
    sync_role_groups(apps)

    assert {config.label: config.models_module for config in apps.get_app_configs()} == before
