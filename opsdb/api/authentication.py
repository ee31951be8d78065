"""Token authentication (``Authorization: Token <token>``) that costs no query while the token is cached.

The token is looked up by its SHA-256 digest through ``opsdb.tokens.cached_token``: the user, its
role groups and its allowed sites are read once per ``API_TOKEN_CACHE_SECONDS`` per process, and
``opsdb.api.permissions`` answers from them. How revocation reaches the cache: ``opsdb/tokens.py``.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from opsdb.roles import remember_roles
from opsdb.tokens import cached_token


class RoleTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``; the user comes with its role groups and allowed sites."""

    def authenticate_credentials(self, key):
        entry = cached_token(key)
        if entry is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = entry.user()
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_roles(user, groups=set(entry.groups), site_ids=list(entry.site_ids) if entry.site_ids else None)
        return user, entry.token()
