"""Who may call what: the roles of DESIGN.md over DRF.

- read and write endpoints: Django model permissions (``opsdb.roles`` gives each group its own),
  with ``view`` required to read;
- work and ingest endpoints: workers (and operators);
- a worker with allowed sites (``WorkerProfile.sites``) only sees jobs at those sites.
"""

from django.contrib.auth.models import AnonymousUser
from rest_framework import permissions

from opsdb.roles import is_operator, is_worker


def allowed_site_ids(user) -> list[int] | None:
    """The sites a worker is restricted to; None when it may work anywhere (or is not a worker)."""
    if isinstance(user, AnonymousUser) or not is_worker(user) or is_operator(user):
        return None
    cache = getattr(user, "_opsdb_site_ids", False)
    if cache is False:
        from opsdb.models import Site

        ids = list(Site.objects.filter(workers__user=user).values_list("pk", flat=True))
        cache = ids or None
        user._opsdb_site_ids = cache
    return cache


class ModelRolePermissions(permissions.DjangoModelPermissions):
    """Django model permissions, with ``view`` needed to read (DRF's default lets anyone read)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class IsWorker(permissions.BasePermission):
    """Workers do work and ingest; operators may too (to repair or test by hand)."""

    message = "Only worker accounts (and operators) may use this endpoint."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated) and (is_worker(user) or is_operator(user))


class IsOperator(permissions.BasePermission):
    message = "Only operators may do this."

    def has_permission(self, request, view) -> bool:
        return is_operator(request.user)
