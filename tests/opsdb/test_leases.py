"""The shared leased-job state machine and its services, exercised on every job kind."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus
from opsdb.leases import backoff_delay
from opsdb.services import (
    LeaseConflict,
    claim_next,
    job_cancel,
    job_claim,
    job_complete,
    job_expire,
    job_fail,
    job_heartbeat,
    job_retry,
)
from staging.models import LongTermArchiveTransfer
from tests import factories as f

pytestmark = pytest.mark.django_db

JOB_FACTORIES = {
    "package": f.DataTransferPackageFactory,
    "transfer": f.DataTransferFactory,
    "unpack": f.DataTransferUnpackFactory,
    "archive": f.LongTermArchiveTransferFactory,
    "stage": f.StagingJobFactory,
}


@pytest.fixture(params=sorted(JOB_FACTORIES))
def job(request):
    return JOB_FACTORIES[request.param]()


def claimed(job, worker="w1"):
    return job_claim(job=job, worker=worker)


def test_claim_pending_job_becomes_active_with_lease(job):
    job = claimed(job)

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE
    assert job.lease_holder == "w1"
    assert len(job.lease_token) >= 20
    assert job.lease_expires_at > timezone.now()


def test_complete_moves_to_the_kinds_done_state(job):
    job = claimed(job)

    job, changed = job_complete(job=job, lease_token=job.lease_token, log_path="/logs/1.log")

    job.refresh_from_db()
    assert changed is True
    assert job.status == type(job).DONE
    assert job.log_path == "/logs/1.log"


def test_complete_repeated_with_same_token_changes_nothing(job):
    job = claimed(job)
    token = job.lease_token
    job_complete(job=job, lease_token=token)
    logs_before = StateLog.objects.count()

    job, changed = job_complete(job=job, lease_token=token)

    assert changed is False
    assert StateLog.objects.count() == logs_before


def test_complete_with_wrong_token_is_refused_and_changes_nothing(job):
    job = claimed(job)

    with pytest.raises(LeaseConflict):
        job_complete(job=job, lease_token="not-the-token")

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE


def test_complete_after_lease_expired_is_refused(job):
    job = claimed(job)
    type(job).objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(LeaseConflict):
        job_complete(job=job, lease_token=job.lease_token)


def test_fail_goes_back_to_pending_with_backoff(job):
    job = claimed(job)

    job, _ = job_fail(job=job, lease_token=job.lease_token, error="disk full", log_path="/logs/2.log")

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.attempts == 1
    assert job.next_attempt_at > timezone.now()
    assert job.last_error == "disk full"
    assert job.logs.count() == 1
    assert job.logs.get().log_path == "/logs/2.log"


def test_fail_repeated_with_same_token_changes_nothing(job):
    job = claimed(job)
    token = job.lease_token
    job_fail(job=job, lease_token=token, error="boom")

    job, changed = job_fail(job=job, lease_token=token, error="boom")

    assert changed is False
    assert job.attempts == 1


def test_fail_not_retryable_goes_straight_to_failed(job):
    job = claimed(job)

    job, _ = job_fail(job=job, lease_token=job.lease_token, error="checksum mismatch", retryable=False)

    assert job.status == JobStatus.FAILED


def test_fail_when_attempts_spent_goes_to_failed(job, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    for _ in range(type(job).max_attempts()):
        type(job).objects.filter(pk=job.pk).update(next_attempt_at=None)
        job.refresh_from_db()
        job = claimed(job)
        job, _ = job_fail(job=job, lease_token=job.lease_token, error="boom")

    assert job.status == JobStatus.FAILED
    assert job.attempts == type(job).max_attempts()


def test_archive_third_failure_requires_intervention_second_does_not():
    job = f.LongTermArchiveTransferFactory()
    states = []
    for _ in range(3):
        job = claimed(job)
        job, _ = job_fail(job=job, lease_token=job.lease_token, error="tape drive offline")
        states.append((job.status, job.requires_intervention))

    assert states == [
        (JobStatus.PENDING, False),
        (JobStatus.PENDING, False),
        (JobStatus.FAILED, True),
    ]


def test_operator_retry_clears_intervention_and_attempts():
    job = f.LongTermArchiveTransferFactory()
    job = claimed(job)
    job_fail(job=job, lease_token=job.lease_token, error="x", retryable=False)
    job.refresh_from_db()
    assert job.requires_intervention is True
    user = f.operator()

    job = job_retry(job=job, by=user)

    job.refresh_from_db()
    assert (job.status, job.requires_intervention, job.attempts) == (JobStatus.PENDING, False, 0)
    log = StateLog.objects.for_(job).latest()
    assert (log.source_state, log.state, log.transition, log.by) == ("FAILED", "PENDING", "retry", user)


def test_retry_refused_unless_failed(job):
    with pytest.raises(TransitionNotAllowed):
        job_retry(job=job)


def test_cancel_pending_job_then_cancelling_again_is_refused(job):
    job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED

    other = type(job).objects.get(pk=job.pk)
    with pytest.raises(TransitionNotAllowed):
        job_cancel(job=other)


def test_cancel_active_job_is_refused(job):
    job = claimed(job)

    with pytest.raises(TransitionNotAllowed):
        job_cancel(job=job)


def test_claim_refused_when_not_pending(job):
    job = claimed(job)

    with pytest.raises(TransitionNotAllowed):
        claimed(job)


def test_stale_instance_raises_concurrent_transition(job):
    stale = type(job).objects.get(pk=job.pk)
    claimed(job, worker="first")

    with pytest.raises(ConcurrentTransition), transaction.atomic():
        stale.claim(worker="second", token="t", expires_at=timezone.now())
        stale.save()

    job.refresh_from_db()
    assert job.lease_holder == "first"


def test_status_is_protected_from_direct_assignment(job):
    with pytest.raises(AttributeError):
        job.status = JobStatus.ACTIVE


def test_expired_lease_counts_as_failed_attempt_and_late_report_is_refused(job):
    job = claimed(job)
    token = job.lease_token
    type(job).objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=5))

    assert job_expire(job=job) is True

    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    with pytest.raises(LeaseConflict):
        job_fail(job=job, lease_token=token, error="late")
    with pytest.raises(LeaseConflict):
        job_complete(job=job, lease_token=token)


def test_expire_leaves_a_live_lease_alone(job):
    job = claimed(job)

    assert job_expire(job=job) is False


def test_archive_third_expired_lease_requires_intervention():
    job = f.LongTermArchiveTransferFactory()
    for _ in range(3):
        job = claimed(job)
        LongTermArchiveTransfer.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(1))
        job_expire(job=job)
        job.refresh_from_db()

    assert (job.status, job.requires_intervention) == (JobStatus.FAILED, True)


def test_heartbeat_extends_lease_and_records_progress(job):
    job = claimed(job)
    before = job.lease_expires_at

    job = job_heartbeat(job=job, lease_token=job.lease_token, bytes_done=1234, lease_seconds=3600)

    assert job.lease_expires_at > before
    assert job.bytes_done == 1234


def test_heartbeat_with_replaced_lease_is_refused(job):
    job = claimed(job)
    old = job.lease_token
    type(job).objects.filter(pk=job.pk).update(lease_token="replaced")

    with pytest.raises(LeaseConflict):
        job_heartbeat(job=job, lease_token=old)


def test_claim_next_skips_jobs_in_backoff_and_takes_highest_priority():
    later = f.DataTransferFactory(next_attempt_at=timezone.now() + timedelta(hours=1))
    low = f.DataTransferFactory(priority=0)
    high = f.DataTransferFactory(priority=5)
    model = type(later)

    first = claim_next(queryset=model.objects.all(), worker="w")
    second = claim_next(queryset=model.objects.all(), worker="w")
    third = claim_next(queryset=model.objects.all(), worker="w")

    assert [first.pk, second.pk, third] == [high.pk, low.pk, None]


def test_every_transition_is_logged_with_source_target_and_reason(job):
    job = claimed(job, worker="cologne-dtn-1")
    job_fail(job=job, lease_token=job.lease_token, error="network down")

    logs = list(StateLog.objects.for_(job).order_by("timestamp", "pk"))

    assert [(log.source_state, log.state, log.transition) for log in logs] == [
        ("PENDING", "ACTIVE", "claim"),
        ("ACTIVE", "PENDING", "fail"),
    ]
    assert logs[0].description == "claimed by cologne-dtn-1"
    assert "network down" in logs[1].description


def test_backoff_grows_and_is_capped(settings):
    settings.JOB_BACKOFF_BASE_SECONDS = 10
    settings.JOB_BACKOFF_MAX_SECONDS = 100
    settings.JOB_BACKOFF_JITTER = 0

    delays = [backoff_delay(n).total_seconds() for n in range(1, 7)]

    assert delays == [10, 20, 40, 80, 100, 100]


def test_backoff_jitter_stays_within_bounds_and_under_cap(settings):
    settings.JOB_BACKOFF_BASE_SECONDS = 10
    settings.JOB_BACKOFF_MAX_SECONDS = 100
    settings.JOB_BACKOFF_JITTER = 0.5

    delays = {backoff_delay(3).total_seconds() for _ in range(200)} | {backoff_delay(20).total_seconds()}

    assert min(delays) >= 20 and max(delays) <= 100
    assert len(delays) > 1
