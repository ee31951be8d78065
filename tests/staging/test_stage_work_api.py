"""The ``stage`` kind through the HTTP work API (runs once the api branch's /api/v1/work/ is routed)."""

import pytest
from django.urls import Resolver404, resolve
from rest_framework.test import APIClient

from opsdb.choices import JobStatus
from opsdb.models import RawDataFileCopy
from opsdb.tokens import api_token_create
from staging.choices import StagedPackageState
from staging.services import staging_job_create
from tests import factories as f

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"


@pytest.fixture
def worker_api():
    try:
        resolve(CLAIM)
    except Resolver404:
        pytest.skip("the work API (/api/v1/work/) is not in this build: it comes from the api branch")
    _, token = api_token_create(user=f.worker_user("cologne-dtn"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def job(topology, alice):
    return staging_job_create(owner=alice, raw_packages=topology.packages[:2],
                              destination_location=topology.cologne_processing)


def report_from(claimed: dict) -> dict:
    return {"lease_token": claimed["lease_token"], "packages": [
        {"name": p["name"], "files": [
            {"relative_path": x["relative_path"], "path": f"{p['destination_path']}/{x['relative_path']}",
             "checksum": x["checksum"]} for x in p["files"]
        ]} for p in claimed["packages"]
    ]}


def claim(client) -> dict:
    response = client.post(CLAIM, {"worker": "cologne-dtn-1", "kinds": ["stage"], "sites": ["cologne"]},
                           format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_stage_claim_heartbeat_complete_over_http(worker_api, job, topology):
    claimed = claim(worker_api)
    first = claimed["packages"][0]["name"]

    beat = worker_api.post(f"/api/v1/work/stage/{job.pk}/heartbeat/",
                           {"lease_token": claimed["lease_token"], "items_done": [first]}, format="json")
    done = worker_api.post(f"/api/v1/work/stage/{job.pk}/complete/", report_from(claimed), format="json")

    job.refresh_from_db()
    assert (claimed["kind"], claimed["id"], claimed["site"]) == ("stage", job.pk, "cologne")
    assert claimed["destination"]["location"]["name"] == "processing"
    assert beat.status_code == 200
    assert done.status_code == 200
    assert job.status == JobStatus.READY
    assert set(job.items.values_list("state", flat=True)) == {StagedPackageState.STAGED}
    assert RawDataFileCopy.objects.filter(location=topology.cologne_processing).count() == 4


def test_stage_complete_bad_checksum_is_400_over_http(worker_api, job):
    claimed = claim(worker_api)
    report = report_from(claimed)
    report["packages"][0]["files"][0]["checksum"] = "f" * 64

    response = worker_api.post(f"/api/v1/work/stage/{job.pk}/complete/", report, format="json")

    job.refresh_from_db()
    assert response.status_code == 400
    assert "checksum mismatch" in str(response.json()["packages"])
    assert job.status == JobStatus.ACTIVE
    assert RawDataFileCopy.objects.count() == 0


def test_stage_heartbeat_unknown_item_is_400_over_http(worker_api, job):
    claimed = claim(worker_api)

    response = worker_api.post(f"/api/v1/work/stage/{job.pk}/heartbeat/",
                               {"lease_token": claimed["lease_token"], "items_done": ["nope.tar"]}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["items_done"]
    assert set(job.items.values_list("state", flat=True)) == {StagedPackageState.PENDING}


def test_stage_fail_not_retryable_emails_the_owner_over_http(worker_api, job, django_capture_on_commit_callbacks):
    from django.core import mail

    claimed = claim(worker_api)

    with django_capture_on_commit_callbacks(execute=True):
        response = worker_api.post(f"/api/v1/work/stage/{job.pk}/fail/",
                                   {"lease_token": claimed["lease_token"], "error": "No space left on device",
                                    "retryable": False}, format="json")

    job.refresh_from_db()
    assert response.status_code == 200
    assert job.status == JobStatus.FAILED
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} failed"]
    assert "ran out of space" in mail.outbox[0].body
