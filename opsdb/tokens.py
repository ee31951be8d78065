"""Workers' API tokens: made, revoked and rotated here, stored only as a SHA-256 digest, and looked
up through a short-lived in-process cache so that an authenticated request costs no query.

A token is 256 random bits, so one SHA-256 (no salt, no slow hash) is enough to make the stored
digest useless to whoever reads the database, and lets a request find its token by an index seek.

The cache (digest → the user's fields, role groups and allowed sites) lives in each server
process for at most ``API_TOKEN_CACHE_SECONDS``. Revoking or rotating a token, and changing a
user, its groups, a worker's sites, deleting a group or a site, empties the cache of the process
that made the change at once (signals, and again when the transaction commits); other processes
see the change when their entry expires, at most ``API_TOKEN_CACHE_SECONDS`` later.
``last_used_at`` is written at most once per ``API_TOKEN_LAST_USED_SECONDS`` (a minute) per process and
token, not on every request.
"""

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from opsdb import roles
from opsdb.models import ApiToken, Site, WorkerProfile

TOKEN_PREFIX = "opsdb_"
SHOWN_PREFIX_LENGTH = 12


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@transaction.atomic
def api_token_create(*, user: User, name: str = "", by: User | None = None) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the token, which is not stored and cannot be shown again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, prefix=token[:SHOWN_PREFIX_LENGTH],
                                  digest=token_digest(token), created_by=by)
    return row, token


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke ``token`` (already revoked: unchanged); it stops working at once in this process."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    invalidate_token_cache_now_and_on_commit()  # .update() sends no signal
    return token


@transaction.atomic
def api_token_rotate(*, token: ApiToken, by: User | None = None) -> tuple[ApiToken, str]:
    """Replace ``token`` by a new one with the same user and name; the old one is revoked."""
    api_token_revoke(token=token)
    return api_token_create(user=token.user, name=token.name, by=by)


def api_tokens_revoke_all(*, user: User) -> int:
    """Revoke every active token of ``user``; returns how many."""
    revoked = ApiToken.objects.active().filter(user=user).update(revoked_at=timezone.now())
    invalidate_token_cache_now_and_on_commit()
    return revoked


# --- authentication through the in-process cache ----------------------------------------------

ROLE_GROUPS = roles.ROLE_GROUPS
MAX_CACHED_TOKENS = 10_000
USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


@dataclass
class CachedToken:
    """What a request needs to know about its token, read once per cache lifetime."""

    token_id: int
    name: str
    user_values: tuple
    groups: frozenset[str]
    site_ids: tuple[int, ...] | None  # None: may work at every site
    loaded_at: float  # time.monotonic()
    last_used_at: datetime | None

    def user(self) -> User:
        """A fresh User for this request (nothing one request sets on it reaches another)."""
        return User.from_db("default", USER_FIELDS, self.user_values)

    def token(self) -> ApiToken:
        return ApiToken(pk=self.token_id, name=self.name, user_id=self.user_values[USER_FIELDS.index("id")])


_cache: dict[str, CachedToken] = {}
_generation = 0
_lock = threading.Lock()


def cached_token(token: str) -> CachedToken | None:
    """The active token ``token`` with its user, groups and sites, or None; no query while cached."""
    digest = token_digest(token)
    entry = _cache.get(digest)
    if entry is None or time.monotonic() - entry.loaded_at >= settings.API_TOKEN_CACHE_SECONDS:
        generation = _generation
        entry = _load(digest)
        with _lock:
            if entry is None:
                _cache.pop(digest, None)
                return None
            if generation == _generation:  # nothing changed while it was read: keep it
                if len(_cache) >= MAX_CACHED_TOKENS:
                    _cache.clear()
                _cache[digest] = entry
    _record_use(entry)
    return entry


def _load(digest: str) -> CachedToken | None:
    memberships = User.groups.through.objects.filter(user_id=OuterRef("user_id"))
    flags = {f"in_{name}": Exists(memberships.filter(group__name=name)) for name in ROLE_GROUPS}
    row = ApiToken.objects.active().filter(digest=digest).select_related("user").annotate(**flags).first()
    if row is None:
        return None
    sites = tuple(Site.objects.filter(workers__user_id=row.user_id).values_list("pk", flat=True))
    return CachedToken(
        token_id=row.pk, name=row.name, user_values=tuple(getattr(row.user, name) for name in USER_FIELDS),
        groups=frozenset(name for name in ROLE_GROUPS if getattr(row, f"in_{name}")),
        site_ids=sites or None, loaded_at=time.monotonic(), last_used_at=row.last_used_at,
    )


def _record_use(entry: CachedToken) -> None:
    now = timezone.now()
    last = entry.last_used_at
    if last is not None and (now - last).total_seconds() < settings.API_TOKEN_LAST_USED_SECONDS:
        return
    entry.last_used_at = now
    ApiToken.objects.filter(pk=entry.token_id).update(last_used_at=now)


def invalidate_token_cache() -> None:
    """Forget every cached token of this process (the next request of each reads it again)."""
    global _generation
    with _lock:
        _generation += 1
        _cache.clear()


def invalidate_token_cache_now_and_on_commit(**kwargs) -> None:
    """Now, and again at commit: a request reading between the two would cache the old state."""
    invalidate_token_cache()
    transaction.on_commit(invalidate_token_cache)


def _user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login changes nothing a token's request relies on
    invalidate_token_cache_now_and_on_commit()


def connect_cache_invalidation() -> None:
    """Called once from ``OpsdbConfig.ready``."""
    uid = "opsdb.tokens.invalidate"
    post_save.connect(_user_saved, sender=User, dispatch_uid=f"{uid}.user.save")
    for model in (User, Group, Site, ApiToken, WorkerProfile):
        post_delete.connect(invalidate_token_cache_now_and_on_commit, sender=model,
                            dispatch_uid=f"{uid}.{model.__name__}.delete")
    for model in (ApiToken, WorkerProfile):
        post_save.connect(invalidate_token_cache_now_and_on_commit, sender=model,
                          dispatch_uid=f"{uid}.{model.__name__}.save")
    for through in (User.groups.through, WorkerProfile.sites.through):
        m2m_changed.connect(invalidate_token_cache_now_and_on_commit, sender=through,
                            dispatch_uid=f"{uid}.{through.__name__}.m2m")
