"""Helpers for API tests: clients authenticated as each role."""

from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from opsdb.models import WorkerProfile
from tests import factories as f


def token_client(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def worker(name: str = "worker", sites=()) -> User:
    """A worker account restricted to ``sites`` (none: every site)."""
    user = f.worker_user(name)
    profile, _ = WorkerProfile.objects.get_or_create(user=user)
    profile.sites.set(sites)
    return user


def worker_client(name: str = "worker", sites=()) -> APIClient:
    return token_client(worker(name, sites))


def operator_client(name: str = "operator") -> APIClient:
    return token_client(f.operator(name))


def scientist_client(name: str = "scientist") -> APIClient:
    return token_client(f.scientist(name))
