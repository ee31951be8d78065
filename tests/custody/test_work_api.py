"""The delete job kind through the work API: claim, per-copy report, failures and the claim-time check."""

import pytest
from django.conf import settings
from django.utils import timezone
from django_fsm_log.models import StateLog

from custody.models import DeletionItem, DeletionJob, DeletionOutcome
from custody.planning import plan_deletions
from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import DataLocation, RawDataPackageCopy
from opsdb.services import job_expire
from tests.apiclient import worker_client
from tests.custody.scenario import deliver, world

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return worker_client()


def claim(client):
    return client.post("/api/v1/work/claim/", {"worker": "w1", "kinds": ["delete"]}, format="json")


def report(client, claimed, action, **body):
    return client.post(f"/api/v1/work/delete/{claimed['id']}/{action}/",
                       {"lease_token": claimed["lease_token"], **body}, format="json")


def ready(packages: int = 2):
    """ccat's buffer copies archived at both sites, scheduled and in a delete job (bundle copy removed)."""
    w = world(packages=packages)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    w.bundle.copies.all().delete()
    plan_deletions(now=timezone.now())
    return w


def ccat(w) -> list[str]:
    return sorted(RawDataPackageCopy.objects.filter(location=w.ccat.buffer).values_list("status", flat=True))


def test_claim_gives_every_copy_and_starts_their_deletion(client):
    w = ready()

    claimed = claim(client).json()

    assert claimed["kind"] == "delete"
    assert claimed["location"]["base_path"] == w.ccat.buffer.base_path
    paths = RawDataPackageCopy.objects.filter(location=w.ccat.buffer).values_list("path", flat=True)
    assert sorted(c["path"] for c in claimed["copies"]) == sorted(paths)
    assert {c["kind"] for c in claimed["copies"]} == {"raw_package"}
    assert ccat(w) == [CopyStatus.DELETION_IN_PROGRESS] * 2


def test_complete_deletes_each_copy_and_says_which_were_gone(client):
    w = ready()
    claimed = claim(client).json()
    first, second = claimed["copies"]

    response = report(client, claimed, "complete", copies=[{"id": first["id"], "outcome": "deleted"},
                                                           {"id": second["id"], "outcome": "gone"}])

    assert response.status_code == 200, response.json()
    assert ccat(w) == [CopyStatus.DELETED] * 2
    gone = DeletionItem.objects.get(pk=second["id"])
    assert gone.outcome == DeletionOutcome.GONE
    log = StateLog.objects.filter(transition="mark_deleted", object_id=gone.raw_package_copy_id).get()
    assert "already gone" in log.description
    job = DeletionJob.objects.get(pk=claimed["id"])
    assert job.logs.filter(message__startswith="1 deleted, 1 already gone (counted as deleted), 0 failed at "
                           "ccat:buffer").count() == 1


@pytest.mark.parametrize("copies", [
    "none",
    "first-only",
    "twice",
    "unknown",
    "bad-outcome",
])
def test_complete_with_a_bad_report_is_400_and_changes_nothing(client, copies):
    w = ready()
    claimed = claim(client).json()
    first, second = (c["id"] for c in claimed["copies"])
    body = {
        "none": [],
        "first-only": [{"id": first, "outcome": "deleted"}],
        "twice": [{"id": first, "outcome": "deleted"}, {"id": first, "outcome": "deleted"},
                  {"id": second, "outcome": "deleted"}],
        "unknown": [{"id": first, "outcome": "deleted"}, {"id": second, "outcome": "deleted"},
                    {"id": 999999, "outcome": "deleted"}],
        "bad-outcome": [{"id": first, "outcome": "vanished"}, {"id": second, "outcome": "deleted"}],
    }[copies]

    response = report(client, claimed, "complete", copies=body)

    assert response.status_code == 400, response.json()
    assert "copies" in response.json()
    assert ccat(w) == [CopyStatus.DELETION_IN_PROGRESS] * 2
    assert DeletionJob.objects.get(pk=claimed["id"]).status == JobStatus.ACTIVE


def test_failed_copy_gets_another_attempt_with_backoff_then_fails_for_good(client):
    w = ready(packages=1)
    location = w.ccat.buffer
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS + 1):
        DeletionJob.objects.filter(status=JobStatus.PENDING).update(next_attempt_at=None)
        claimed = claim(client).json()
        [copy] = claimed["copies"]
        response = report(client, claimed, "complete",
                          copies=[{"id": copy["id"], "outcome": "failed", "error": "Permission denied"}])
        assert response.status_code == 200
        DataLocation.objects.filter(pk=location.pk).update(deletion_failures_recent=0)
        plan_deletions(now=timezone.now())
        expected = CopyStatus.DELETION_FAILED if attempt == settings.JOB_MAX_ATTEMPTS else \
            CopyStatus.DELETION_SCHEDULED
        assert ccat(w) == [expected], attempt

    assert DeletionJob.objects.filter(status=JobStatus.PENDING).count() == 0
    assert RawDataPackageCopy.objects.get(location=location).deletion_failures == settings.JOB_MAX_ATTEMPTS


def test_failed_copies_count_towards_pausing_the_location(client):
    w = ready()
    claimed = claim(client).json()

    report(client, claimed, "complete", copies=[{"id": c["id"], "outcome": "failed", "error": "EIO"}
                                                for c in claimed["copies"]])

    location = DataLocation.objects.get(pk=w.ccat.buffer.pk)
    assert (location.deletion_failures_recent, location.deletion_last_error) == (2, "w1: EIO")


def test_whole_job_failure_releases_its_copies_and_the_last_one_fails_them(client):
    w = ready()
    claimed = claim(client).json()

    response = report(client, claimed, "fail", error="base path not mounted")

    assert response.json()["status"] == JobStatus.PENDING
    assert ccat(w) == [CopyStatus.DELETION_SCHEDULED] * 2
    DeletionJob.objects.filter(pk=claimed["id"]).update(next_attempt_at=None)
    again = claim(client).json()
    assert again["id"] == claimed["id"]
    assert ccat(w) == [CopyStatus.DELETION_IN_PROGRESS] * 2

    response = report(client, again, "fail", error="not a DISK location", retryable=False)

    assert response.json()["status"] == JobStatus.FAILED
    assert ccat(w) == [CopyStatus.DELETION_FAILED] * 2


def test_expired_lease_releases_the_copies(client):
    w = ready()
    claimed = claim(client).json()
    job = DeletionJob.objects.get(pk=claimed["id"])
    DeletionJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))

    assert job_expire(job=job)

    assert ccat(w) == [CopyStatus.DELETION_SCHEDULED] * 2


def test_claim_keeps_copies_the_rule_no_longer_allows_and_cancels_an_empty_job(client):
    w = ready()
    RawDataPackageCopy.objects.filter(location=w.cornell.archive).update(status=CopyStatus.MISMATCH)

    response = claim(client)

    assert response.status_code == 204
    assert ccat(w) == [CopyStatus.PRESENT] * 2
    job = DeletionJob.objects.get()
    assert job.status == JobStatus.CANCELLED
    assert set(job.items.values_list("outcome", flat=True)) == {DeletionOutcome.KEPT}


def test_claim_keeps_only_the_copy_no_longer_allowed(client):
    w = ready()
    one = w.packages[0]
    RawDataPackageCopy.objects.filter(location=w.cornell.archive, raw_package=one).update(status=CopyStatus.MISSING)

    claimed = claim(client).json()

    assert len(claimed["copies"]) == 1
    assert RawDataPackageCopy.objects.get(location=w.ccat.buffer, raw_package=one).status == CopyStatus.PRESENT


@pytest.mark.parametrize("change", [{"deletion_enabled": False}, {"deletion_paused_reason": "paused"}])
def test_no_claim_where_deletion_is_off_or_paused(client, change):
    w = ready()
    DataLocation.objects.filter(pk=w.ccat.buffer.pk).update(**change)

    assert claim(client).status_code == 204
    assert ccat(w) == [CopyStatus.DELETION_SCHEDULED] * 2


def test_operator_retry_of_a_failed_job_deletes_again(client):
    from opsdb.services import job_retry

    w = ready()
    claimed = claim(client).json()
    report(client, claimed, "fail", error="broken", retryable=False)
    job_retry(job=DeletionJob.objects.get(pk=claimed["id"]))

    again = claim(client).json()
    response = report(client, again, "complete", copies=[{"id": c["id"], "outcome": "deleted"}
                                                         for c in again["copies"]])

    assert response.status_code == 200
    assert ccat(w) == [CopyStatus.DELETED] * 2


def test_read_endpoint_lists_delete_jobs_with_their_copies(client):
    ready()

    response = client.get("/api/v1/delete-jobs/")

    assert response.status_code == 200
    [job] = response.json()["results"]
    assert len(job["copies"]) == 2
