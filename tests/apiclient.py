"""Helpers for API tests: clients authenticated as each role."""

from django.apps import apps
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from opsdb import roles
from opsdb.models import WorkerProfile
from opsdb.tokens import api_token_create
from tests import factories as f


def ensure_role_groups() -> None:
    """The groups come from a data migration; a transactional test's flush removes them for the next one."""
    if Group.objects.filter(name=roles.WORKERS).exists():
        return
    # sync_role_groups marks app configs as model-less when it is done (it is written for the
    # historical apps of a migration); keep the live registry as it was.
    saved = {config: config.models_module for config in apps.get_app_configs()}
    try:
        roles.sync_role_groups(apps)
    finally:
        for config, module in saved.items():
            config.models_module = module


def token_client(user: User) -> APIClient:
    client = APIClient()
    _, token = api_token_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def worker(name: str = "worker", sites=()) -> User:
    """A worker account restricted to ``sites`` (none: every site)."""
    ensure_role_groups()
    user = f.worker_user(name)
    profile, _ = WorkerProfile.objects.get_or_create(user=user)
    profile.sites.set(sites)
    return user


def worker_client(name: str = "worker", sites=()) -> APIClient:
    return token_client(worker(name, sites))


def operator_client(name: str = "operator") -> APIClient:
    ensure_role_groups()
    return token_client(f.operator(name))


def scientist_client(name: str = "scientist") -> APIClient:
    ensure_role_groups()
    return token_client(f.scientist(name))
