"""``manage.py create_worker``: a worker account, its token and its sites."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

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
    assert Token.objects.get(user=user).key == token
    assert list(user.groups.values_list("name", flat=True)) == ["workers"]
    assert (user.is_staff, user.is_superuser, user.has_usable_password()) == (False, False, False)
    assert sorted(user.worker_profile.sites.values_list("name", flat=True)) == ["ccat", "cologne"]


def test_create_worker_token_claims_through_the_api():
    job = f.LongTermArchiveTransferFactory()
    token = create_worker("dtn", "--site", job.source_location.site.name)
    from rest_framework.test import APIClient

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
