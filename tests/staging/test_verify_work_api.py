"""The verify job kind through the work API: payload, reports, refusals, claim order, read endpoint."""

from datetime import timedelta

import pytest
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus
from staging.choices import FixityOutcome
from staging.fixity import plan_fixity
from staging.models import FixityCheck
from tests import factories as f
from tests import topology as t
from tests.apiclient import operator_client, worker_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def check():
    cologne = t.site("cologne")
    package = f.RawDataPackageFactory(name="raw-7.tar", size=1234)
    f.RawDataPackageCopyFactory(raw_package=package, location=cologne.archive, path="raw/raw-7.tar",
                                checksum_verified=package.checksum, verified_at=timezone.now() - timedelta(days=400))
    plan_fixity(now=timezone.now())
    return FixityCheck.objects.get()


def claim(client, kinds=("verify",)):
    return client.post("/api/v1/work/claim/", {"worker": "auditor", "kinds": list(kinds)}, format="json")


def report(client, job_id, action, body):
    return client.post(f"/api/v1/work/verify/{job_id}/{action}/", body, format="json")


def test_verify_payload_names_the_copy_and_the_expected_checksum(check):
    job = claim(worker_client()).json()

    assert (job["kind"], job["id"], job["site"], job["recheck"]) == ("verify", check.pk, "cologne", False)
    assert job["raw_package"] == {"id": check.copy.raw_package_id, "name": "raw-7.tar", "size": 1234,
                                  "checksum": check.copy.raw_package.checksum, "checksum_algorithm": "sha256"}
    assert (job["copy"]["id"], job["copy"]["path"], job["copy"]["location"]["name"]) == (
        check.copy_id, "raw/raw-7.tar", "archive")


def test_verify_complete_with_another_checksum_marks_the_copy_mismatch(check):
    client = worker_client()
    job = claim(client).json()

    response = report(client, check.pk, "complete", {"lease_token": job["lease_token"], "checksum": "AB" * 32})

    check.refresh_from_db()
    check.copy.refresh_from_db()
    assert response.status_code == 200
    assert (check.status, check.outcome, check.checksum_found) == (JobStatus.COMPLETED, FixityOutcome.MISMATCH,
                                                                   "ab" * 32)
    assert check.copy.status == CopyStatus.MISMATCH


@pytest.mark.parametrize("body", [
    {}, {"missing": True, "checksum": "ab" * 32}, {"checksum": "not hex"}, {"missing": "perhaps"},
    {"checksum": "ab" * 200},
], ids=["neither", "both", "not-hex", "not-bool", "too-long"])
def test_verify_bad_report_is_400_and_changes_nothing(check, body):
    client = worker_client()
    job = claim(client).json()

    response = report(client, check.pk, "complete", {"lease_token": job["lease_token"], **body})

    check.refresh_from_db()
    check.copy.refresh_from_db()
    assert response.status_code == 400
    assert (check.status, check.outcome, check.copy.status) == (JobStatus.ACTIVE, "", CopyStatus.PRESENT)


def test_verify_is_claimed_after_every_other_kind(check):
    archive = f.LongTermArchiveTransferFactory()
    client = worker_client()

    first = claim(client, kinds=("verify", "archive")).json()
    second = claim(client, kinds=("verify", "archive")).json()

    assert [(first["kind"], first["id"]), (second["kind"], second["id"])] == [("archive", archive.pk),
                                                                              ("verify", check.pk)]


def test_verify_restricted_worker_elsewhere_gets_nothing(check):
    elsewhere = worker_client("w-ccat", sites=[f.SiteFactory(name="ccat")])

    assert claim(elsewhere).status_code == 204


def test_fixity_checks_read_endpoint_lists_outcomes_with_explanations(check):
    body = operator_client().get("/api/v1/fixity-checks/?status=PENDING").json()

    [row] = body["results"]
    assert (row["id"], row["raw_package_name"], row["site_name"], row["recheck"]) == (
        check.pk, "raw-7.tar", "cologne", False)
    assert "code" in row["explanation"]
