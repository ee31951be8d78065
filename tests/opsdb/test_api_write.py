"""Operators write sites, locations and routes through the API, validated as in the admin."""

import pytest

from opsdb.models import DataLocation, Site
from tests import factories as f
from tests.apiclient import operator_client, scientist_client, worker_client
from transfers.models import DataTransferRoute

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def test_operator_creates_a_site():
    response = operator_client().post(f"{API}sites/", {"name": "cologne", "title": "Cologne"}, format="json")

    assert response.status_code == 201
    assert Site.objects.get(name="cologne").title == "Cologne"


@pytest.mark.parametrize(("body", "field"), [({"name": "Bad Name"}, "name"), ({"name": ""}, "name"), ({}, "name")])
def test_site_invalid_is_400_with_field_errors(body, field):
    response = operator_client().post(f"{API}sites/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Site.objects.exists()


def test_site_duplicate_name_is_400():
    f.SiteFactory(name="ccat")

    response = operator_client().post(f"{API}sites/", {"name": "ccat"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()


@pytest.mark.parametrize("client_factory", [scientist_client, worker_client])
def test_non_operator_cannot_write_sites(client_factory):
    site = f.SiteFactory(name="ccat")
    client = client_factory()

    assert client.post(f"{API}sites/", {"name": "x"}, format="json").status_code == 403
    assert client.patch(f"{API}sites/{site.pk}/", {"title": "y"}, format="json").status_code == 403
    assert client.delete(f"{API}sites/{site.pk}/").status_code == 403
    site.refresh_from_db()
    assert site.title == "Ccat"


def test_operator_creates_and_edits_a_location():
    site = f.SiteFactory(name="ccat")
    client = operator_client()

    created = client.post(f"{API}locations/", {"site": site.pk, "name": "buffer", "location_type": "BUFFER",
                                               "base_path": "/data/buffer"}, format="json")
    edited = client.patch(f"{API}locations/{created.json()['id']}/", {"priority": 5}, format="json")

    assert (created.status_code, edited.status_code) == (201, 200)
    assert DataLocation.objects.get(name="buffer").priority == 5


@pytest.mark.parametrize(("body", "field"), [
    ({"location_type": "ATTIC"}, "location_type"),
    ({"base_path": ""}, "base_path"),
    ({"capacity_bytes": -1}, "non_field_errors"),  # a check constraint: the admin shows it above the form
    ({"name": "buffer-ccat"}, "non_field_errors"),  # one name per site
    ({"site": 999999}, "site"),
])
def test_location_invalid_is_400_with_field_errors(body, field):
    site = f.SiteFactory(name="ccat")
    f.DataLocationFactory(site=site, name="buffer-ccat")
    data = {"site": site.pk, "name": "new", "location_type": "BUFFER", "base_path": "/data/new", **body}

    response = operator_client().post(f"{API}locations/", data, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert DataLocation.objects.count() == 1


def test_operator_creates_a_route():
    a, b = f.SiteFactory(name="ccat"), f.SiteFactory(name="cologne")

    response = operator_client().post(f"{API}routes/", {"origin_site": a.pk, "destination_site": b.pk,
                                                        "method": "bbcp", "max_concurrent": 2}, format="json")

    assert response.status_code == 201
    assert DataTransferRoute.objects.get().max_concurrent == 2


@pytest.mark.parametrize(("kind", "field"), [("same_ends", "destination_site"), ("relay_is_end", "relay_site"),
                                             ("relay_without_site", "relay_site"), ("cycle", "relay_site"),
                                             ("custom_wrong_site", "origin_location")])
def test_invalid_route_is_400_with_the_admins_message(kind, field):
    a, b, c = (f.SiteFactory(name=n) for n in ("ccat", "cologne", "cornell"))
    body = {"origin_site": a.pk, "destination_site": b.pk, "method": "bbcp", "route_type": "DIRECT"}
    if kind == "same_ends":
        body["destination_site"] = a.pk
    elif kind == "relay_is_end":
        body.update(route_type="RELAY", relay_site=b.pk)
    elif kind == "relay_without_site":
        body.update(route_type="RELAY")
    elif kind == "cycle":
        # a → b goes through c; c → b through a would come back to c → b.
        f.RouteFactory(origin_site=a, destination_site=b, route_type="RELAY", relay_site=c)
        body.update(origin_site=c.pk, destination_site=b.pk, route_type="RELAY", relay_site=a.pk)
    else:
        elsewhere = f.DataLocationFactory(site=c)
        body.update(route_type="CUSTOM", origin_location=elsewhere.pk,
                    destination_location=f.DataLocationFactory(site=b).pk)
    before = DataTransferRoute.objects.count()

    response = operator_client().post(f"{API}routes/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert DataTransferRoute.objects.count() == before


def test_deleting_a_site_still_in_use_is_409():
    location = f.DataLocationFactory()

    response = operator_client().delete(f"{API}sites/{location.site_id}/")

    assert response.status_code == 409
    assert Site.objects.filter(pk=location.site_id).exists()


def test_deleting_an_unused_route_is_204():
    route = f.RouteFactory()

    assert operator_client().delete(f"{API}routes/{route.pk}/").status_code == 204
    assert not DataTransferRoute.objects.exists()


def test_catalogue_is_read_only_even_for_operators():
    package = f.RawDataPackageFactory()

    response = operator_client().patch(f"{API}raw-packages/{package.pk}/", {"size": 1}, format="json")

    assert response.status_code == 405


# Operators retry and cancel jobs.

def failed_archive():
    from opsdb.services import job_claim, job_fail

    job = job_claim(job=f.LongTermArchiveTransferFactory(), worker="w")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="tape", retryable=False)
    return job


def test_operator_retries_a_failed_archive_transfer():
    job = failed_archive()

    response = operator_client().post(f"{API}archive-transfers/{job.pk}/retry/", {"reason": "tape back"},
                                      format="json")

    job.refresh_from_db()
    assert response.status_code == 200
    assert (response.json()["status"], job.status, job.requires_intervention, job.attempts) == (
        "PENDING", "PENDING", False, 0)


def test_retry_of_a_pending_job_is_409_with_status():
    job = f.DataTransferFactory()

    response = operator_client().post(f"{API}transfers/{job.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["status"] == "PENDING"


def test_operator_cancels_a_pending_transfer():
    job = f.DataTransferFactory()

    response = operator_client().post(f"{API}transfers/{job.pk}/cancel/", format="json")

    assert (response.status_code, response.json()["status"]) == (200, "CANCELLED")


def test_cancel_of_an_active_job_is_409():
    from opsdb.services import job_claim

    job = job_claim(job=f.DataTransferPackageFactory(), worker="w")

    response = operator_client().post(f"{API}transfer-packages/{job.pk}/cancel/")

    assert (response.status_code, response.json()["status"]) == (409, "ACTIVE")


@pytest.mark.parametrize("client_factory", [scientist_client, worker_client])
def test_non_operator_cannot_retry_or_cancel(client_factory):
    job = failed_archive()

    client = client_factory()
    assert client.post(f"{API}archive-transfers/{job.pk}/retry/").status_code == 403
    assert client.post(f"{API}archive-transfers/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.status == "FAILED"


def test_retry_reason_too_long_is_400():
    job = failed_archive()

    response = operator_client().post(f"{API}archive-transfers/{job.pk}/retry/", {"reason": "x" * 501},
                                      format="json")

    assert response.status_code == 400
    job.refresh_from_db()
    assert job.status == "FAILED"
