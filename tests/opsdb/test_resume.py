"""What ops-db knows about resumable transfers: bytes moved per attempt, resume hints, partial data's fate."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from opsdb.choices import JobStatus, LogLevel
from opsdb.leases import partial_data_cutoff
from opsdb.recovery import discard_expired_partial_data, expire_leases
from opsdb.registry import job_kinds
from opsdb.services import job_cancel, job_claim, job_complete, job_fail, job_heartbeat
from tests import factories as f
from tests.apiclient import scientist_client, worker_client
from tests.opsdb.test_api_concurrency import archive_jobs
from transfers.models import DataTransfer

pytestmark = pytest.mark.django_db

TB = 10**12
PARTIALS = "/api/v1/work/partials/"


def transfer(size: int = 50 * TB, **fields) -> DataTransfer:
    return f.DataTransferFactory(transfer_package=f.DataTransferPackageFactory(size=size, checksum="ab" * 32),
                                 **fields)


def claimed(job, worker: str = "w1"):
    return job_claim(job=job, worker=worker, lease_seconds=600)


def interrupted(job, moved: int):
    """An attempt that moved ``moved`` bytes, then failed retryably; the job is due again at once."""
    job = claimed(job)
    job_heartbeat(job=job, lease_token=job.lease_token, bytes_done=moved)
    job.refresh_from_db()
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="link down")
    type(job).objects.filter(pk=job.pk).update(next_attempt_at=None)
    job.refresh_from_db()
    return job


def messages(job) -> list[str]:
    return [log.message for log in job.logs.order_by("created_at", "pk")]


def test_failed_attempt_records_the_bytes_it_had_moved():
    job = interrupted(transfer(), moved=45 * TB)

    assert (job.status, job.resume_bytes) == (JobStatus.PENDING, 45 * TB)
    assert messages(job)[-1] == "attempt 1 failed (will retry; 45.0 TB moved): link down"


def test_next_claim_payload_carries_the_resume_hint():
    job = interrupted(transfer(), moved=45 * TB)
    client = worker_client()

    body = client.post("/api/v1/work/claim/", {"worker": "w2", "kinds": ["transfer"]}, format="json").json()

    assert (body["id"], body["attempt"], body["resume_bytes"]) == (job.pk, 2, 45 * TB)


def test_first_claim_payload_has_nothing_to_resume():
    transfer()

    body = worker_client().post("/api/v1/work/claim/", {"worker": "w1"}, format="json").json()

    assert body["resume_bytes"] == 0


def test_heartbeat_resumed_from_is_logged_once_per_attempt():
    job = claimed(interrupted(transfer(), moved=45 * TB), "w2")
    client = worker_client()
    beat = {"lease_token": job.lease_token, "bytes_done": 38 * TB, "resumed_from": 37_200_000_000_000}

    first = client.post(f"/api/v1/work/transfer/{job.pk}/heartbeat/", beat, format="json")
    again = client.post(f"/api/v1/work/transfer/{job.pk}/heartbeat/", {**beat, "resumed_from": 1}, format="json")

    job.refresh_from_db()
    assert (first.status_code, again.status_code) == (200, 200)
    assert job.resumed_from == 37_200_000_000_000
    assert messages(job)[-1] == "resumed at 37.2 TB of 50.0 TB (attempt 2; the last attempt had moved 45.0 TB)"
    assert messages(job).count(messages(job)[-1]) == 1


def test_heartbeat_resumed_from_zero_after_an_interruption_says_it_started_over():
    job = claimed(interrupted(transfer(), moved=45 * TB), "w2")

    job_heartbeat(job=job, lease_token=job.lease_token, resumed_from=0)

    log = job.logs.order_by("-pk").first()
    assert (log.level, log.message) == (LogLevel.WARNING, "started over from zero of 50.0 TB (attempt 2): the "
                                                          "45.0 TB the last attempt had moved could not be kept")


def test_heartbeat_resumed_from_zero_on_a_first_attempt_logs_nothing():
    job = claimed(transfer())
    before = messages(job)

    job_heartbeat(job=job, lease_token=job.lease_token, resumed_from=0)

    job.refresh_from_db()
    assert (job.resumed_from, messages(job)) == (0, before)


def test_heartbeat_negative_resumed_from_is_400_and_changes_nothing():
    job = claimed(transfer())

    response = worker_client().post(f"/api/v1/work/transfer/{job.pk}/heartbeat/",
                                    {"lease_token": job.lease_token, "resumed_from": -1}, format="json")

    job.refresh_from_db()
    assert response.status_code == 400
    assert "resumed_from" in response.json()
    assert job.resumed_from is None


def test_new_claim_forgets_the_last_attempts_resumed_from():
    job = claimed(interrupted(transfer(), moved=10), "w2")
    job_heartbeat(job=job, lease_token=job.lease_token, resumed_from=10)
    job.refresh_from_db()
    job_fail(job=job, lease_token=job.lease_token, error="again")
    DataTransfer.objects.filter(pk=job.pk).update(next_attempt_at=None)

    job = claimed(DataTransfer.objects.get(pk=job.pk), "w3")

    assert (job.resumed_from, job.resume_bytes) == (None, 10)


def test_complete_and_cancel_forget_the_partial_data():
    done = claimed(interrupted(transfer(), moved=10), "w2")
    done, _ = job_complete(job=done, lease_token=done.lease_token)
    cancelled = job_cancel(job=interrupted(transfer(), moved=10))

    assert (done.resume_bytes, cancelled.resume_bytes) == (None, None)


def test_attempts_spent_forget_the_partial_data():
    job = transfer()
    DataTransfer.objects.filter(pk=job.pk).update(attempts=job.max_attempts() - 1)

    job = interrupted(DataTransfer.objects.get(pk=job.pk), moved=10)

    assert (job.status, job.resume_bytes) == (JobStatus.FAILED, None)


def test_expired_lease_records_the_bytes_moved():
    job = claimed(transfer())
    job_heartbeat(job=job, lease_token=job.lease_token, bytes_done=7 * TB)
    DataTransfer.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    expire_leases(now=timezone.now())

    job.refresh_from_db()
    assert (job.status, job.resume_bytes) == (JobStatus.PENDING, 7 * TB)


# -- work/partials/ ----------------------------------------------------------------------------
def verdicts(client, jobs) -> dict[tuple[str, int], tuple[bool, str]]:
    response = client.post(PARTIALS, {"jobs": jobs}, format="json")
    assert response.status_code == 200, response.content
    return {(v["kind"], v["id"]): (v["keep"], v["reason"]) for v in response.json()["jobs"]}


def test_partials_keep_only_data_an_attempt_will_resume():
    waiting = interrupted(transfer(), moved=10)
    running = claimed(transfer())
    failed = transfer()
    DataTransfer.objects.filter(pk=failed.pk).update(attempts=failed.max_attempts() - 1)
    failed = interrupted(DataTransfer.objects.get(pk=failed.pk), moved=10)
    cancelled = job_cancel(job=interrupted(transfer(), moved=10))
    done = claimed(transfer())
    job_complete(job=done, lease_token=done.lease_token)
    archive = f.LongTermArchiveTransferFactory()
    asked = [{"kind": "transfer", "id": job.pk} for job in (waiting, running, failed, cancelled, done)]

    answer = verdicts(worker_client(), [*asked, {"kind": "transfer", "id": 999_999},
                                        {"kind": "archive", "id": archive.pk}])

    assert answer == {
        ("transfer", waiting.pk): (True, "the next attempt resumes it"),
        ("transfer", running.pk): (True, "an attempt is running"),
        ("transfer", failed.pk): (False, "failed for good: a retry by an operator starts from zero"),
        ("transfer", cancelled.pk): (False, "the job is cancelled"),
        ("transfer", done.pk): (False, "the job is transferred"),
        ("transfer", 999_999): (False, "no such job at this worker's sites"),
        ("archive", archive.pk): (True, "the next attempt resumes it"),
    }


def test_partials_of_a_job_waiting_longer_than_the_setting_are_not_kept(settings):
    settings.PARTIAL_MAX_AGE_SECONDS = 3600
    job = interrupted(transfer(), moved=10)
    DataTransfer.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))

    answer = verdicts(worker_client(), [{"kind": "transfer", "id": job.pk}])

    assert answer == {("transfer", job.pk): (False, "kept longer than PARTIAL_MAX_AGE_SECONDS (3600 s)")}


def test_partials_of_a_job_at_another_site_are_not_kept():
    job = interrupted(transfer(), moved=10)
    elsewhere = f.SiteFactory(name="elsewhere")

    answer = verdicts(worker_client("restricted", sites=[elsewhere]), [{"kind": "transfer", "id": job.pk}])

    assert answer == {("transfer", job.pk): (False, "no such job at this worker's sites")}


def test_partials_costs_one_query_per_kind_asked_about(django_assert_num_queries):
    client = worker_client()
    one = [interrupted(transfer(), moved=10)]
    three = [interrupted(transfer(), moved=10) for _ in range(3)]
    archive = f.LongTermArchiveTransferFactory()
    client.post(PARTIALS, {"jobs": [{"kind": "transfer", "id": 1}]}, format="json")  # authentication caches warm

    with django_assert_num_queries(1, exact=False) as few:
        verdicts(client, [{"kind": "transfer", "id": job.pk} for job in one])
    with django_assert_num_queries(len(few.captured_queries)):
        verdicts(client, [{"kind": "transfer", "id": job.pk} for job in three])
    with django_assert_num_queries(len(few.captured_queries) + 1):
        verdicts(client, [*({"kind": "transfer", "id": job.pk} for job in three),
                          {"kind": "archive", "id": archive.pk}])


@pytest.mark.parametrize("body", [{}, {"jobs": []}, {"jobs": [{"kind": "nope", "id": 1}]},
                                  {"jobs": [{"kind": "transfer", "id": 0}]}, {"jobs": "x"},
                                  {"jobs": [{"kind": "transfer", "id": 1}] * 1001}])
def test_partials_bad_input_is_400(body):
    response = worker_client().post(PARTIALS, body, format="json")

    assert response.status_code == 400
    assert "jobs" in response.json()


def test_partials_is_for_workers_only():
    response = scientist_client().post(PARTIALS, {"jobs": [{"kind": "transfer", "id": 1}]}, format="json")

    assert response.status_code == 403


# -- the scheduler's housekeeping --------------------------------------------------------------
def test_scheduler_discards_partial_data_older_than_the_setting(settings):
    settings.PARTIAL_MAX_AGE_SECONDS = 86400
    old, recent = interrupted(transfer(), moved=3 * TB), interrupted(transfer(), moved=3 * TB)
    DataTransfer.objects.filter(pk=old.pk).update(heartbeat_at=timezone.now() - timedelta(days=2))

    result = discard_expired_partial_data(now=timezone.now())

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.resume_bytes, recent.resume_bytes) == (None, 3 * TB)
    assert result.count == 1
    assert messages(old)[-1] == ("partial data (3.0 TB) kept longer than 1 day(s): discarded; "
                                 "the next attempt starts from zero")
    assert discard_expired_partial_data(now=timezone.now()).count == 0  # idempotent


@pytest.mark.postgres
def test_partial_data_pass_reads_only_jobs_with_partial_data():
    """Thousands waiting, none with partial data: the pass's query goes through the partial-data index."""
    archive_jobs(3000)
    model = job_kinds["archive"].model
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {model._meta.db_table}")
    with transaction.atomic():
        plan = model.objects.partial_data_expired(partial_data_cutoff()).explain()

    assert "archive_partial_data" in plan
