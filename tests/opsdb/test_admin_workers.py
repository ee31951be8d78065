"""Workers and their tokens in the admin: tokens shown once, never in plain text afterwards,
revoked and rotated by operators; the workers known by token listed with sites and last use."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from opsdb.models import ApiToken
from opsdb.tokens import api_token_create
from tests import factories as f
from tests.apiclient import worker

pytestmark = pytest.mark.django_db


def create_worker(*args) -> str:
    out = StringIO()
    call_command("create_worker", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def api_status(token: str) -> int:
    return APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/sites/").status_code


def shown_tokens(html: str) -> list[str]:
    return re.findall(r'<code class="opsdb-token">([^<]+)</code>', html)


def test_no_admin_page_an_operator_opens_shows_a_workers_token(client):
    f.SiteFactory(name="cologne")
    token = create_worker("cologne-dtn-1", "--site", "cologne")
    client.force_login(f.operator())
    index = client.get(reverse("admin:index")).content.decode()
    changelists = sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index)))
    detail_pages = [reverse("admin:opsdb_apitoken_change", args=[ApiToken.objects.get().pk])]

    leaks = [url for url in changelists + detail_pages if token in client.get(url).content.decode()]

    assert "/admin/opsdb/apitoken/" in changelists
    assert leaks == []


def test_operator_makes_a_token_in_the_admin_and_sees_it_once(client):
    dtn = worker("dtn")
    client.force_login(f.operator())

    page = client.post(reverse("admin:opsdb_apitoken_add"), {"user": dtn.pk, "name": "dtn-host"})

    [token] = shown_tokens(page.content.decode())
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.created_by.username) == (dtn, "dtn-host", "operator")
    assert "no-store" in page["Cache-Control"]
    assert api_status(token) == 200
    assert token not in client.get(reverse("admin:opsdb_apitoken_change", args=[row.pk])).content.decode()


def test_operator_rotates_tokens_old_ones_stop_new_ones_work(client):
    row, old = api_token_create(user=worker("dtn"), name="dtn-host")
    client.force_login(f.operator())

    page = client.post(reverse("admin:opsdb_apitoken_changelist"),
                       {"action": "rotate_selected", "_selected_action": [row.pk]})

    [new] = shown_tokens(page.content.decode())
    assert (api_status(old), api_status(new)) == (401, 200)
    assert ApiToken.objects.active().get().name == "dtn-host"


def test_operator_revokes_a_token_and_it_stops_at_once(client):
    row, token = api_token_create(user=worker("dtn"))
    assert api_status(token) == 200
    client.force_login(f.operator())

    client.post(reverse("admin:opsdb_apitoken_changelist"), {"action": "revoke_selected", "_selected_action": [row.pk]})

    row.refresh_from_db()
    assert row.revoked_at is not None
    assert api_status(token) == 401


def test_tokens_cannot_be_deleted_only_revoked(client):
    row, _ = api_token_create(user=worker("dtn"))
    client.force_login(f.operator())

    response = client.post(reverse("admin:opsdb_apitoken_delete", args=[row.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert ApiToken.objects.filter(pk=row.pk).exists()


def test_workers_list_shows_every_worker_with_sites_tokens_and_last_seen(client):
    f.SiteFactory(name="ccat")
    seen = create_worker("ccat-dtn", "--site", "ccat")
    create_worker("roamer")
    api_status(seen)
    client.force_login(f.operator())

    html = client.get(reverse("admin:opsdb_workerprofile_changelist")).content.decode()

    rows = re.findall(r"<tr>.*?</tr>", html, flags=re.DOTALL)
    ccat_row = next(r for r in rows if "ccat-dtn" in r)
    roamer_row = next(r for r in rows if "roamer" in r)
    assert "2 workers" in html
    assert ">ccat<" in ccat_row and ">never<" not in ccat_row
    assert "every site" in roamer_row and ">never<" in roamer_row


def test_workers_list_costs_the_same_queries_for_one_and_three_workers(client, django_assert_num_queries):
    client.force_login(f.operator())
    create_worker("w1")
    client.get(reverse("admin:opsdb_workerprofile_changelist"))
    with django_assert_num_queries(8) as one:
        client.get(reverse("admin:opsdb_workerprofile_changelist"))
    create_worker("w2")
    create_worker("w3")

    with django_assert_num_queries(len(one.captured_queries)):
        client.get(reverse("admin:opsdb_workerprofile_changelist"))
