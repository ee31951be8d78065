"""Accounts in the admin: operators manage users and groups only within what they themselves may do.

An operator holds ``auth.change_user`` to look after colleagues' and scientists' accounts. Django's
stock user admin would let it tick ``is_superuser`` on itself or hand out permissions and groups it
does not hold. Here, for anyone but a superuser:
- ``is_superuser`` is read-only;
- the groups and permissions offered are only those whose permissions the editor holds itself;
- an account that may do more than the editor (a superuser, or one with a permission the editor
  lacks) is read-only to it, password included, so nobody takes over a stronger account;
- the same holds for groups, should an operator ever be given the group permissions.
"""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission, User
from django.db.models import Exists, OuterRef, Q, QuerySet


def held_permissions(user) -> set[str]:
    """``app_label.codename`` of every permission ``user`` holds (directly or through its groups)."""
    return user.get_all_permissions() if user.is_active else set()


def held_permission_ids(user) -> QuerySet:
    held = held_permissions(user)
    pairs = Q(pk__in=[])
    for name in held:
        app_label, codename = name.split(".", 1)
        pairs |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(pairs).values("pk")


def grantable_permissions(editor) -> QuerySet:
    """The permissions ``editor`` may hand out: every one for a superuser, else its own."""
    if editor.is_superuser:
        return Permission.objects.all()
    return Permission.objects.filter(pk__in=held_permission_ids(editor))


def grantable_groups(editor) -> QuerySet:
    """Groups none of whose permissions ``editor`` lacks."""
    if editor.is_superuser:
        return Group.objects.all()
    beyond = Group.permissions.through.objects.filter(group_id=OuterRef("pk")).exclude(
        permission_id__in=held_permission_ids(editor)
    )
    return Group.objects.exclude(Exists(beyond))


def within_reach(editor, user: User) -> bool:
    """Whether ``editor`` may do everything ``user`` may (so that changing ``user`` escalates nothing)."""
    if editor.is_superuser:
        return True
    if user.is_superuser:
        return False
    return held_permissions(user) <= held_permissions(editor)


class GuardedUserAdmin(UserAdmin):
    """Django's user admin, limited to what the editing operator may do itself."""

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*fields, "is_superuser")

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or within_reach(request.user, obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or within_reach(request.user, obj))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["queryset"] = grantable_groups(request.user)
        elif db_field.name == "user_permissions":
            kwargs["queryset"] = grantable_permissions(request.user).select_related("content_type")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class GuardedGroupAdmin(GroupAdmin):
    """Groups: only those within the editor's own permissions can be changed, and only with those."""

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or grantable_groups(request.user).filter(pk=obj.pk).exists())

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or grantable_groups(request.user).filter(pk=obj.pk).exists())

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "permissions":
            kwargs["queryset"] = grantable_permissions(request.user).select_related("content_type")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


admin.site.unregister(User)
admin.site.unregister(Group)
admin.site.register(User, GuardedUserAdmin)
admin.site.register(Group, GuardedGroupAdmin)
