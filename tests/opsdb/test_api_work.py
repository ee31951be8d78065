"""The work protocol's contract, shown on archive jobs (the kind-specific results have their own tests)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opsdb.choices import JobStatus, LogLevel
from opsdb.models import DataTransferLog
from opsdb.services import job_claim
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.apiclient import scientist_client, worker_client

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"


def url(job, action: str, kind: str = "archive") -> str:
    return f"/api/v1/work/{kind}/{job.pk}/{action}/"


def claim(client, **body):
    return client.post(CLAIM, {"worker": "w1", **body}, format="json")


@pytest.fixture
def client():
    return worker_client()


@pytest.fixture
def job():
    return f.LongTermArchiveTransferFactory()


@pytest.fixture
def claimed(client, job):
    response = claim(client)
    assert response.status_code == 200
    job.refresh_from_db()
    return job


def test_claim_returns_the_job_with_everything_needed(client, job):
    response = claim(client, lease_seconds=120)

    body = response.json()
    job.refresh_from_db()
    assert response.status_code == 200
    assert body["kind"] == "archive"
    assert body["id"] == job.pk
    assert body["lease_token"] == job.lease_token
    assert body["attempt"] == 1
    assert body["max_attempts"] == 3
    assert body["site"] == job.source_location.site.name
    assert body["raw_package"]["checksum"] == job.raw_package.checksum
    assert body["source"]["path"] == f"raw/{job.raw_package.name}"
    assert body["source"]["location"] == {
        "id": job.source_location.pk, "site": job.source_location.site.name, "name": job.source_location.name,
        "location_type": "BUFFER", "storage_type": "DISK", "base_path": job.source_location.base_path,
        "host": job.source_location.host,
    }
    assert body["destination"]["location"]["location_type"] == "LONG_TERM_ARCHIVE"
    assert job.status == JobStatus.ACTIVE
    assert job.lease_holder == "w1"
    assert timedelta(seconds=110) < job.lease_expires_at - timezone.now() <= timedelta(seconds=120)


def test_claim_without_jobs_is_204(client):
    response = claim(client)

    assert response.status_code == 204
    assert response.content == b""


def test_claim_respects_next_attempt_at(client):
    f.LongTermArchiveTransferFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert claim(client).status_code == 204


def test_claim_takes_each_job_once(client):
    f.LongTermArchiveTransferFactory.create_batch(2)

    ids = [claim(client).json()["id"] for _ in range(2)]

    assert len(set(ids)) == 2
    assert claim(client).status_code == 204


def test_claim_only_of_asked_kinds(client, job):
    assert claim(client, kinds=["transfer", "package"]).status_code == 204
    assert claim(client, kinds=["archive"]).json()["id"] == job.pk


def test_claim_of_a_kind_with_no_due_jobs_is_204(client, job):
    assert claim(client, kinds=["stage"]).status_code == 204


def test_claim_only_at_asked_sites(client, job):
    other = f.SiteFactory()

    assert claim(client, sites=[other.name]).status_code == 204
    assert claim(client, sites=[job.source_location.site.name]).json()["id"] == job.pk


def test_claim_restricted_worker_never_gets_jobs_elsewhere(job):
    here = f.SiteFactory(name="here")
    client = worker_client("restricted", sites=[here])

    assert claim(client).status_code == 204
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_claim_restricted_worker_gets_jobs_at_its_sites(job):
    client = worker_client("restricted", sites=[job.source_location.site])

    assert claim(client).json()["id"] == job.pk


def test_claim_restricted_worker_asking_for_other_site_is_403(job):
    f.SiteFactory(name="elsewhere")
    client = worker_client("restricted", sites=[job.source_location.site])

    response = claim(client, sites=["elsewhere"])

    assert response.status_code == 403
    assert "elsewhere" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker": ""}, "worker"),
        ({}, "worker"),
        ({"worker": "w", "kinds": ["bogus"]}, "kinds"),
        ({"worker": "w", "kinds": "archive"}, "kinds"),
        ({"worker": "w", "kinds": []}, "kinds"),
        ({"worker": "w", "methods": []}, "methods"),
        ({"worker": "w", "sites": ["no-such-site"]}, "sites"),
        ({"worker": "w", "methods": ["ftp"]}, "methods"),
        ({"worker": "w", "lease_seconds": -5}, "lease_seconds"),
        ({"worker": "w", "lease_seconds": 10**12}, "lease_seconds"),
        ({"worker": "w", "lease_seconds": "soon"}, "lease_seconds"),
        ({"worker": "x" * 201}, "worker"),
        ({"worker": ["w"]}, "worker"),
    ],
)
def test_claim_malformed_is_400_with_field_errors(client, job, body, field):
    response = client.post(CLAIM, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_claim_anonymous_is_401(job):
    from rest_framework.test import APIClient

    assert APIClient().post(CLAIM, {"worker": "w"}, format="json").status_code == 401


def test_claim_by_scientist_is_403(job):
    response = scientist_client().post(CLAIM, {"worker": "w"}, format="json")

    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_heartbeat_extends_the_lease_and_records_progress(client, claimed):
    before = claimed.lease_expires_at

    response = client.post(url(claimed, "heartbeat"), {"lease_token": claimed.lease_token, "bytes_done": 42,
                                                       "lease_seconds": 3600}, format="json")

    claimed.refresh_from_db()
    assert response.status_code == 200
    assert claimed.lease_expires_at > before
    assert response.json()["lease_expires_at"] == claimed.lease_expires_at.isoformat().replace("+00:00", "Z")
    assert claimed.bytes_done == 42


def test_heartbeat_with_wrong_token_is_409_with_status(client, claimed):
    response = client.post(url(claimed, "heartbeat"), {"lease_token": "not-the-token"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "the lease on this job is no longer held", "status": "ACTIVE"}


def test_heartbeat_after_the_lease_expired_is_409(client, claimed):
    expired_at = timezone.now() - timedelta(seconds=1)
    LongTermArchiveTransfer.objects.filter(pk=claimed.pk).update(lease_expires_at=expired_at)

    response = client.post(url(claimed, "heartbeat"), {"lease_token": claimed.lease_token, "bytes_done": 42,
                                                       "lease_seconds": 3600}, format="json")

    claimed.refresh_from_db()
    assert response.status_code == 409
    assert (claimed.status, claimed.lease_expires_at, claimed.bytes_done) == (JobStatus.ACTIVE, expired_at, None)


def test_report_of_unknown_kind_is_404(client, claimed):
    response = client.post(url(claimed, "heartbeat", kind="bogus"), {"lease_token": claimed.lease_token},
                           format="json")

    assert response.status_code == 404


def test_report_of_missing_job_is_404(client):
    missing = client.post("/api/v1/work/archive/999999/heartbeat/", {"lease_token": "x"}, format="json")
    assert missing.status_code == 404
    too_big = client.post(f"/api/v1/work/archive/{2**70}/complete/", {"lease_token": "x"}, format="json")
    assert too_big.status_code == 404


def test_report_by_restricted_worker_about_a_job_elsewhere_is_404(client, claimed):
    outsider = worker_client("outsider", sites=[f.SiteFactory(name="far")])

    for action in ("heartbeat", "complete", "fail", "log"):
        body = {"lease_token": claimed.lease_token, "checksum": claimed.raw_package.checksum, "error": "x",
                "level": "INFO", "message": "m"}
        assert outsider.post(url(claimed, action), body, format="json").status_code == 404
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.ACTIVE


def complete_body(job, **extra):
    return {"lease_token": job.lease_token, "checksum": job.raw_package.checksum, **extra}


def test_complete_records_the_result(client, claimed):
    response = client.post(url(claimed, "complete"), complete_body(claimed, log_path="/logs/a.log"), format="json")

    claimed.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == {"kind": "archive", "id": claimed.pk, "status": "COMPLETED", "attempts": 0,
                               "next_attempt_at": None,
                               "finished_at": claimed.finished_at.isoformat().replace("+00:00", "Z")}
    assert claimed.log_path == "/logs/a.log"
    copy = claimed.raw_package.copies.get(location=claimed.destination_location)
    assert copy.checksum_verified == claimed.raw_package.checksum


def test_complete_twice_with_the_same_token_is_200_and_changes_nothing_more(client, claimed):
    first = client.post(url(claimed, "complete"), complete_body(claimed), format="json")
    logs = DataTransferLog.objects.count()
    claimed.refresh_from_db()
    updated = claimed.updated_at

    second = client.post(url(claimed, "complete"), complete_body(claimed), format="json")

    claimed.refresh_from_db()
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert DataTransferLog.objects.count() == logs
    assert claimed.updated_at == updated


def test_complete_with_stale_token_is_409_and_changes_nothing(client, claimed):
    response = client.post(url(claimed, "complete"), complete_body(claimed, lease_token="stale"), format="json")

    claimed.refresh_from_db()
    assert response.status_code == 409
    assert response.json()["status"] == "ACTIVE"
    assert claimed.status == JobStatus.ACTIVE
    assert not claimed.raw_package.copies.filter(location=claimed.destination_location).exists()


def test_complete_of_a_pending_job_is_409_with_status(client, job):
    response = client.post(url(job, "complete"), {"lease_token": "x" * 20, "checksum": "ab"}, format="json")

    assert response.status_code == 409
    assert response.json()["status"] == "PENDING"


def test_complete_with_malformed_result_is_400(client, claimed):
    response = client.post(url(claimed, "complete"), {"lease_token": claimed.lease_token, "checksum": "xyz!"},
                           format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["checksum"]
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.ACTIVE


def test_fail_goes_back_to_pending_with_backoff_and_a_log(client, claimed):
    response = client.post(url(claimed, "fail"), {"lease_token": claimed.lease_token, "error": "disk full",
                                                  "log_path": "/logs/b.log"}, format="json")

    claimed.refresh_from_db()
    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["attempts"]) == ("PENDING", 1)
    assert body["next_attempt_at"] == claimed.next_attempt_at.isoformat().replace("+00:00", "Z")
    assert claimed.next_attempt_at > timezone.now()
    log = DataTransferLog.objects.get(object_id=claimed.pk, level=LogLevel.ERROR)
    assert log.log_path == "/logs/b.log"
    assert "disk full" in log.message


def test_fail_not_retryable_goes_to_failed_and_needs_intervention(client, claimed):
    response = client.post(url(claimed, "fail"), {"lease_token": claimed.lease_token, "error": "corrupt",
                                                  "retryable": False}, format="json")

    claimed.refresh_from_db()
    assert response.json()["status"] == "FAILED"
    assert claimed.requires_intervention is True


def test_fail_with_stale_token_is_409(client, claimed):
    response = client.post(url(claimed, "fail"), {"lease_token": "stale", "error": "x"}, format="json")

    assert response.status_code == 409
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.ACTIVE


def test_fail_after_complete_is_409_with_status(client, claimed):
    client.post(url(claimed, "complete"), complete_body(claimed), format="json")

    response = client.post(url(claimed, "fail"), {"lease_token": claimed.lease_token, "error": "x"}, format="json")

    assert response.status_code == 409
    assert response.json()["status"] == "COMPLETED"


def test_fail_without_error_is_400(client, claimed):
    response = client.post(url(claimed, "fail"), {"lease_token": claimed.lease_token}, format="json")

    assert response.status_code == 400
    assert "error" in response.json()


def test_log_entry_is_recorded(client, claimed):
    response = client.post(url(claimed, "log"), {"lease_token": claimed.lease_token, "level": "WARNING",
                                                 "message": "slow link", "log_path": "/logs/c.log"}, format="json")

    log = DataTransferLog.objects.get(object_id=claimed.pk, level=LogLevel.WARNING)
    assert response.status_code == 201
    assert (log.message, log.log_path, log.worker) == ("slow link", "/logs/c.log", "w1")


def test_log_message_too_long_is_400(client, claimed):
    response = client.post(url(claimed, "log"), {"lease_token": claimed.lease_token, "level": "INFO",
                                                 "message": "x" * 501}, format="json")

    assert response.status_code == 400
    assert "message" in response.json()
    assert not DataTransferLog.objects.filter(object_id=claimed.pk).exists()


def test_log_with_wrong_token_is_409(client, claimed):
    response = client.post(url(claimed, "log"), {"lease_token": "other", "level": "INFO", "message": "m"},
                           format="json")

    assert response.status_code == 409


def test_log_without_lease_token_is_400_and_nothing_logged(client, claimed):
    response = client.post(url(claimed, "log"), {"level": "INFO", "message": "m"}, format="json")

    assert response.status_code == 400
    assert "lease_token" in response.json()
    assert not DataTransferLog.objects.filter(object_id=claimed.pk, message="m").exists()


def test_log_on_a_job_nobody_claimed_is_409(client, job):
    response = client.post(url(job, "log"), {"lease_token": "", "level": "INFO", "message": "m"}, format="json")

    assert response.status_code in (400, 409)
    assert not DataTransferLog.objects.filter(object_id=job.pk).exists()


def test_log_after_the_lease_expired_is_409(client, claimed):
    LongTermArchiveTransfer.objects.filter(pk=claimed.pk).update(lease_expires_at=timezone.now() - timedelta(1))

    response = client.post(url(claimed, "log"), {"lease_token": claimed.lease_token, "level": "INFO",
                                                 "message": "late"}, format="json")

    assert response.status_code == 409
    assert not DataTransferLog.objects.filter(object_id=claimed.pk, message="late").exists()


def test_log_after_the_job_is_done_is_409(client, claimed):
    client.post(url(claimed, "complete"), complete_body(claimed), format="json")

    response = client.post(url(claimed, "log"), {"lease_token": claimed.lease_token, "level": "INFO",
                                                 "message": "late"}, format="json")

    assert response.status_code == 409
    assert not DataTransferLog.objects.filter(object_id=claimed.pk, message="late").exists()


def test_log_with_bad_level_is_400(client, claimed):
    response = client.post(url(claimed, "log"), {"lease_token": claimed.lease_token, "level": "LOUD",
                                                 "message": "m"}, format="json")

    assert response.status_code == 400
    assert "level" in response.json()


GARBAGE_BODIES = [
    "{not json", "[]", "null", "42", '"string"', '{"lease_token": null}', '{"lease_token": 12}',
    '{"lease_token": {"a": 1}}', '{"lease_token": "' + "t" * 100000 + '"}',
    '{"worker": "w", "lease_seconds": -1}', '{"worker": "w", "kinds": [null]}', '{"worker": "w", "sites": [[]]}',
    '{"lease_token": "x", "bytes_done": -1, "lease_seconds": 99999999999999999999999}',
    '{"lease_token": "x", "checksum": "' + "a" * 5000 + '", "size": -3, "path": "/etc/passwd"}',
    '{"lease_token": "x", "error": "' + "e" * 70000 + '"}', '{"lease_token": "x", "error": "\\u0000"}',
    '{"level": "INFO", "message": "\\ud800"}', '{"worker": "w\\u0000"}', '{"lease_token": 1e400}',
]


@pytest.mark.parametrize("body", GARBAGE_BODIES)
@pytest.mark.parametrize("action", ["claim", "heartbeat", "complete", "fail", "log"])
def test_garbage_is_refused_never_500(client, claimed, action, body):
    target = CLAIM if action == "claim" else url(claimed, action)

    response = client.post(target, body, content_type="application/json")

    # 400 for what is malformed; 409 where the body is well-formed enough to reach the lease check.
    assert response.status_code in (400, 409), response.content[:300]
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.ACTIVE


def test_report_with_a_token_of_another_job_is_409(client, claimed):
    other = job_claim(job=f.LongTermArchiveTransferFactory(), worker="w2")

    response = client.post(url(claimed, "complete"), complete_body(claimed, lease_token=other.lease_token),
                           format="json")

    assert response.status_code == 409


def test_body_too_large_is_400_json(client, claimed):
    response = client.post(CLAIM, '{"worker": "' + "x" * 3_000_000 + '"}', content_type="application/json")

    assert response.status_code == 400
    assert "larger than" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize("kind", ["package", "transfer", "archive"])
def test_claim_query_count_does_not_grow_with_pending_jobs(kind):
    make = {"package": f.DataTransferPackageFactory, "transfer": f.DataTransferFactory,
            "archive": f.LongTermArchiveTransferFactory}[kind]
    client = worker_client()
    make()
    claim(client, kinds=[kind])  # warms the content-type cache the transition log uses
    counts = []
    for pending in (1, 3):
        for _ in range(pending):
            make()
        with CaptureQueriesContext(connection) as queries:
            assert claim(client, kinds=[kind]).status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]


@pytest.mark.parametrize("action", ["heartbeat", "complete", "fail", "log"])
def test_reports_anonymous_is_401_and_by_scientist_403(claimed, action):
    from rest_framework.test import APIClient

    body = {"lease_token": claimed.lease_token, "checksum": claimed.raw_package.checksum, "error": "x",
            "level": "INFO", "message": "m"}

    assert APIClient().post(url(claimed, action), body, format="json").status_code == 401
    assert scientist_client().post(url(claimed, action), body, format="json").status_code == 403
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.ACTIVE


def test_ingest_anonymous_is_401():
    from rest_framework.test import APIClient

    assert APIClient().post("/api/v1/ingest/raw-packages/", {}, format="json").status_code == 401


def test_claim_repeated_with_its_request_id_gets_the_same_job_and_lease(client, job):
    other = f.LongTermArchiveTransferFactory()

    first = claim(client, request_id="req-1")
    again = claim(client, request_id="req-1")

    job.refresh_from_db()
    other.refresh_from_db()
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert (job.status, job.lease_token) == (JobStatus.ACTIVE, first.json()["lease_token"])
    assert other.status == JobStatus.PENDING


def test_claim_with_another_request_id_gets_another_job(client, job):
    f.LongTermArchiveTransferFactory()

    first = claim(client, request_id="req-1").json()
    second = claim(client, request_id="req-2").json()

    assert first["id"] != second["id"]


@pytest.mark.parametrize("who", ["other worker name", "other account"])
def test_claim_request_id_is_only_the_same_workers(client, job, who):
    f.LongTermArchiveTransferFactory()
    first = claim(client, request_id="req-1").json()

    if who == "other account":
        second = claim(worker_client("w-other"), request_id="req-1")
    else:
        second = client.post(CLAIM, {"worker": "w2", "request_id": "req-1"}, format="json")

    assert second.json()["id"] != first["id"]


def test_claim_request_id_of_a_finished_job_claims_a_new_one(client, job):
    other = f.LongTermArchiveTransferFactory()
    first = claim(client, request_id="req-1").json()
    client.post(url(job, "complete"), {"lease_token": first["lease_token"], "checksum": job.raw_package.checksum},
                format="json")

    again = claim(client, request_id="req-1")

    assert again.json()["id"] == other.pk


def test_claim_request_id_after_the_lease_expired_claims_afresh(client, job):
    claim(client, request_id="req-1")
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(1))

    again = claim(client, request_id="req-1")

    assert again.status_code == 204


@pytest.mark.parametrize("request_id", ["", "x" * 65, "a b", "ü", "١", None, ["a"]])
def test_claim_with_a_bad_request_id_is_400(client, job, request_id):
    response = claim(client, request_id=request_id)

    assert response.status_code == 400
    assert "request_id" in response.json()
