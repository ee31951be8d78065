"""``manage.py create_worker``: a worker account, its token and its sites."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from opsdb.models import ApiToken
from opsdb.tokens import cached_token, token_digest
from tests import factories as f

pytestmark = pytest.mark.django_db


def create_worker(*args) -> str:
    out = StringIO()
    call_command("create_worker", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def test_create_worker_prints_its_token_and_sets_sites():
    f.SiteFactory(name="ccat")
    f.SiteFactory(name="cologne")

    token = create_worker("cologne-dtn-1", "--site", "cologne", "--site", "ccat")

    user = User.objects.get(username="cologne-dtn-1")
    stored = ApiToken.objects.get(user=user)
    assert (stored.digest, stored.prefix) == (token_digest(token), token[:12])
    assert list(user.groups.values_list("name", flat=True)) == ["workers"]
    assert (user.is_staff, user.is_superuser, user.has_usable_password()) == (False, False, False)
    assert sorted(user.worker_profile.sites.values_list("name", flat=True)) == ["ccat", "cologne"]


def test_create_worker_token_claims_through_the_api():
    job = f.LongTermArchiveTransferFactory()
    token = create_worker("dtn", "--site", job.source_location.site.name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert client.post("/api/v1/work/claim/", {"worker": "dtn"}, format="json").json()["id"] == job.pk


def test_create_worker_without_sites_may_work_anywhere():
    create_worker("roamer")

    assert not User.objects.get(username="roamer").worker_profile.sites.exists()


def test_create_worker_unknown_site_fails_and_creates_nothing():
    with pytest.raises(CommandError, match="Unknown site"):
        create_worker("dtn", "--site", "atlantis")

    assert not User.objects.filter(username="dtn").exists()


def test_create_worker_existing_name_fails():
    f.UserFactory(username="dtn")

    with pytest.raises(CommandError, match="already exists"):
        create_worker("dtn")


def test_operator_sees_worker_sites_in_the_admin(client):
    f.SiteFactory(name="cologne")
    create_worker("cologne-dtn-1", "--site", "cologne")
    create_worker("roamer")
    client.force_login(f.operator())

    page = client.get("/admin/opsdb/workerprofile/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "cologne-dtn-1" in html and "cologne" in html
    assert "every site" in html


def test_create_worker_stores_no_token_in_plain_text():
    token = create_worker("dtn")

    row = ApiToken.objects.values().get()
    assert token not in {str(value) for value in row.values()}
    assert token.startswith("opsdb_") and len(token) > 40


def test_create_worker_rotate_revokes_the_old_token_and_prints_a_new_one():
    f.SiteFactory(name="ccat")
    old = create_worker("dtn")

    new = create_worker("dtn", "--rotate", "--site", "ccat")

    assert new != old
    assert cached_token(old) is None
    assert cached_token(new).user().username == "dtn"
    assert list(User.objects.get(username="dtn").worker_profile.sites.values_list("name", flat=True)) == ["ccat"]
    assert [t.is_active for t in ApiToken.objects.order_by("pk")] == [False, True]


def test_create_worker_revoke_stops_the_worker_at_once():
    token = create_worker("dtn")
    client = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/sites/").status_code == 200

    assert create_worker("dtn", "--revoke") == ""

    assert client.get("/api/v1/sites/").status_code == 401


def test_create_worker_rotate_of_an_unknown_worker_fails():
    with pytest.raises(CommandError, match="No worker account named 'ghost'"):
        create_worker("ghost", "--rotate")
