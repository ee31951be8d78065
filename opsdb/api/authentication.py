"""Token authentication that reads the user's roles with the token, in one query.

A worker's request needs its token, its groups and whether it is restricted to sites; DRF's
``TokenAuthentication`` plus ``opsdb.api.permissions`` made that three queries per request. Here
the token query answers all three (``EXISTS`` subqueries), and ``permissions`` uses the answers.
Nothing is kept between requests: every request reads the current groups and restriction.
"""

from functools import cache

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from opsdb import roles
from opsdb.api.permissions import remember_roles
from opsdb.models import WorkerProfile

# The role groups ``permissions.in_group`` is asked about.
ROLE_GROUPS = (roles.OPERATORS, roles.WORKERS)


@cache
def tokens_with_roles() -> QuerySet:
    """Tokens with their user, role flags and site restriction; built once (the SQL, not the rows)."""
    memberships = get_user_model().groups.through.objects.filter(user_id=OuterRef("user_id"))
    restrictions = WorkerProfile.sites.through.objects.filter(workerprofile__user_id=OuterRef("user_id"))
    flags = {f"in_{name}": Exists(memberships.filter(group__name=name)) for name in ROLE_GROUPS}
    return Token.objects.select_related("user").annotate(**flags, site_restricted=Exists(restrictions))


class RoleTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``; the user comes with its role groups and site restriction."""

    def authenticate_credentials(self, key):
        try:
            token = tokens_with_roles().get(key=key)
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_roles(token.user, groups={name for name in ROLE_GROUPS if getattr(token, f"in_{name}")},
                       site_restricted=token.site_restricted)
        return token.user, token
