"""Workers' API tokens: stored as digests, revocable and rotatable, and authenticated from an
in-process cache (no query per request) that a change empties at once here and expires elsewhere."""

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from opsdb import roles, tokens
from opsdb.api.authentication import RoleTokenAuthentication
from opsdb.models import ApiToken, WorkerProfile
from opsdb.tokens import api_token_create, api_token_revoke, api_token_rotate, token_digest
from tests import factories as f
from tests.apiclient import worker

pytestmark = pytest.mark.django_db


def client_for(token: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Token {token}")


def token_sql(queries) -> list[str]:
    return [q["sql"] for q in queries if "opsdb_apitoken" in q["sql"] or "opsdb_workerprofile" in q["sql"]]


@pytest.fixture
def later(monkeypatch):
    """Move this process's clock for the cache past its lifetime (as if API_TOKEN_CACHE_SECONDS passed)."""
    real = tokens.time.monotonic

    def advance(seconds: float) -> None:
        monkeypatch.setattr(tokens.time, "monotonic", lambda: real() + seconds)
    return advance


def test_authentication_reads_no_table_once_the_token_is_cached(django_assert_num_queries):
    _, token = api_token_create(user=worker("dtn", sites=[f.SiteFactory(name="ccat")]))
    auth = RoleTokenAuthentication()
    auth.authenticate_credentials(token)  # reads the token, its groups and sites, records the use

    with django_assert_num_queries(0):
        user, _ = auth.authenticate_credentials(token)

    ccat = WorkerProfile.objects.get(user=user).sites.get()
    assert (user.username, user._opsdb_groups, user._opsdb_site_ids) == ("dtn", {roles.WORKERS}, [ccat.pk])


def test_a_cached_request_runs_no_token_or_role_query():
    _, token = api_token_create(user=worker("dtn"))
    client = client_for(token)
    client.post("/api/v1/work/claim/", {"worker": "dtn"}, format="json")

    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/work/claim/", {"worker": "dtn"}, format="json")

    assert response.status_code == 204
    assert token_sql(queries.captured_queries) == []
    assert [q["sql"] for q in queries.captured_queries if "auth_user_groups" in q["sql"]] == []


def test_each_request_gets_its_own_user_object():
    _, token = api_token_create(user=worker("dtn"))
    auth = RoleTokenAuthentication()

    first, _ = auth.authenticate_credentials(token)
    first.first_name = "changed by one request"
    second, _ = auth.authenticate_credentials(token)

    assert second is not first
    assert second.first_name == ""


def test_revoked_token_stops_working_at_once_in_this_process():
    row, token = api_token_create(user=worker("dtn"))
    client = client_for(token)
    assert client.get("/api/v1/sites/").status_code == 200

    api_token_revoke(token=row)

    assert client.get("/api/v1/sites/").status_code == 401


def test_token_revoked_by_another_process_stops_working_within_the_cache_lifetime(settings, later):
    settings.API_TOKEN_CACHE_SECONDS = 30
    row, token = api_token_create(user=worker("dtn"))
    client = client_for(token)
    assert client.get("/api/v1/sites/").status_code == 200
    # Another server process revokes it: its signals empty its own cache, not this one's.
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=timezone.now())

    still_cached = client.get("/api/v1/sites/").status_code
    later(30)
    expired = client.get("/api/v1/sites/").status_code

    assert (still_cached, expired) == (200, 401)


def test_rotated_token_is_replaced_at_once():
    row, old = api_token_create(user=worker("dtn"), name="dtn-host")
    client_for(old).get("/api/v1/sites/")

    new_row, new = api_token_rotate(token=row)

    assert client_for(old).get("/api/v1/sites/").status_code == 401
    assert client_for(new).get("/api/v1/sites/").status_code == 200
    assert (new_row.name, new_row.user_id) == ("dtn-host", row.user_id)


def test_site_restriction_change_takes_effect_at_once():
    ccat, cologne = f.SiteFactory(name="ccat"), f.SiteFactory(name="cologne")
    user = worker("dtn", sites=[ccat])
    _, token = api_token_create(user=user)
    auth = RoleTokenAuthentication()
    auth.authenticate_credentials(token)

    user.worker_profile.sites.set([cologne])

    assert auth.authenticate_credentials(token)[0]._opsdb_site_ids == [cologne.pk]


def test_removal_from_the_workers_group_takes_effect_at_once():
    user = worker("dtn")
    _, token = api_token_create(user=user)
    client = client_for(token)
    assert client.post("/api/v1/work/claim/", {"worker": "dtn"}, format="json").status_code == 204

    user.groups.remove(Group.objects.get(name=roles.WORKERS))

    assert client.post("/api/v1/work/claim/", {"worker": "dtn"}, format="json").status_code == 403


def test_deactivated_account_is_refused_at_once():
    user = worker("dtn")
    _, token = api_token_create(user=user)
    client = client_for(token)
    assert client.get("/api/v1/sites/").status_code == 200

    user.is_active = False
    user.save()

    assert client.get("/api/v1/sites/").status_code == 401


def test_last_use_is_written_at_most_once_a_minute(monkeypatch):
    row, token = api_token_create(user=worker("dtn"))
    client = client_for(token)
    start = timezone.now()

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            client.get("/api/v1/sites/")
        monkeypatch.setattr(tokens.timezone, "now", lambda: start + timedelta(seconds=61))
        client.get("/api/v1/sites/")

    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "opsdb_apitoken"')]
    row.refresh_from_db()
    assert len(writes) == 2
    assert row.last_used_at == start + timedelta(seconds=61)


def test_last_use_is_written_as_often_as_the_setting_says(monkeypatch, settings):
    settings.API_TOKEN_LAST_USED_SECONDS = 10
    row, token = api_token_create(user=worker("dtn"))
    client = client_for(token)
    start = timezone.now()
    client.get("/api/v1/sites/")

    monkeypatch.setattr(tokens.timezone, "now", lambda: start + timedelta(seconds=9))
    client.get("/api/v1/sites/")
    row.refresh_from_db()
    at_nine = row.last_used_at
    monkeypatch.setattr(tokens.timezone, "now", lambda: start + timedelta(seconds=11))
    client.get("/api/v1/sites/")
    row.refresh_from_db()

    assert at_nine < start + timedelta(seconds=1)
    assert row.last_used_at == start + timedelta(seconds=11)


def test_a_load_that_raced_with_a_change_is_not_kept(monkeypatch):
    row, token = api_token_create(user=worker("dtn"))
    real_load = tokens._load

    def load_then_revoked_meanwhile(digest):
        entry = real_load(digest)
        api_token_revoke(token=row)  # the change commits while the old state is being read
        return entry
    monkeypatch.setattr(tokens, "_load", load_then_revoked_meanwhile)
    tokens.cached_token(token)
    monkeypatch.setattr(tokens, "_load", real_load)

    assert tokens.cached_token(token) is None


def test_unknown_token_is_401():
    assert client_for("opsdb_not-a-token").get("/api/v1/sites/").status_code == 401


def test_plain_text_tokens_of_an_older_database_become_digests():
    user = worker("old-dtn")
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        created_type = "timestamp with time zone" if connection.vendor == "postgresql" else "datetime"
        cursor.execute(f"CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created {created_type}, "
                       "user_id integer NOT NULL)")
        cursor.execute("INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
                       [key, timezone.now(), user.pk])
    migration = importlib.import_module("opsdb.migrations.0006_api_tokens")
    editor = SimpleNamespace(connection=connection, execute=lambda sql: connection.cursor().execute(sql))
    from django.apps import apps

    migration.move_plaintext_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert ApiToken.objects.get(user=user).digest == token_digest(key)
    assert client_for(key).get("/api/v1/sites/").status_code == 200
