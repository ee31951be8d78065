"""Token authentication that reads the user's roles with the token, in one query.

A worker's request needs its token, its groups and whether it is restricted to sites; DRF's
``TokenAuthentication`` plus ``opsdb.api.permissions`` made that three queries per request. Here
the token query answers all three (``EXISTS`` subqueries), and ``permissions`` uses the answers.
Nothing is kept between requests: every request reads the current groups and restriction.
"""

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from opsdb import roles
from opsdb.api.permissions import remember_roles
from opsdb.models import WorkerProfile

ROLE_GROUPS = (roles.OPERATORS, roles.SCIENTISTS, roles.WORKERS)


class RoleTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``; the user comes with its role groups and site restriction."""

    def authenticate_credentials(self, key):
        memberships = get_user_model().groups.through.objects.filter(user_id=OuterRef("user_id"))
        restrictions = WorkerProfile.sites.through.objects.filter(workerprofile__user_id=OuterRef("user_id"))
        flags = {f"in_{name}": Exists(memberships.filter(group__name=name)) for name in ROLE_GROUPS}
        try:
            token = (self.get_model().objects.select_related("user")
                     .annotate(**flags, site_restricted=Exists(restrictions)).get(key=key))
        except self.get_model().DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_roles(token.user, groups={name for name in ROLE_GROUPS if getattr(token, f"in_{name}")},
                       site_restricted=token.site_restricted)
        return token.user, token
