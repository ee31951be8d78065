"""Lease recovery, set-based: the bulk variant of ``opsdb.services.job_expire``.

An expired lease counts as a failed attempt under the same rules as a reported failure
(``LeasedJob._record_failure``: backoff, FAILED when attempts are spent, archive transfers'
``requires_intervention`` after 3). Per job kind the pass costs a fixed number of queries: one
locking read of the expired rows, one bulk update of their fields, one status update per target
state, and bulk inserts of the django-fsm-log StateLog rows and DataTransferLog lines — however
many leases expired.
"""

from datetime import datetime

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus, LogLevel
from opsdb.leases import LeasedJob, partial_data_cutoff
from opsdb.models import DataTransferLog
from opsdb.planning import PassResult, human_bytes
from opsdb.registry import job_kinds
from opsdb.services import after_failed_attempt, short_log_message

FAILURE_FIELDS = ["attempts", "attempts_total", "last_error", "lease_expires_at", "lease_token", "finished_at",
                  "next_attempt_at", "resume_bytes"]


def expire_leases(*, now: datetime) -> PassResult:
    """Every ACTIVE job whose lease ran out: a failed attempt → PENDING with backoff, or FAILED."""
    result = PassResult("leases")
    for model in job_kinds.models():
        result.count += _expire_model(model, now, result)
    return result


def _expire_model(model: type[LeasedJob], now: datetime, result: PassResult) -> int:
    queryset = model.objects.lease_expired(now).order_by("pk")
    if connection.features.has_select_for_update:
        # Locked until the pass commits: a worker's late report waits, then finds the lease gone.
        queryset = queryset.select_for_update(skip_locked=True, of=("self",))
    jobs = list(queryset)
    if not jobs:
        return 0
    outcome = {job.pk: (job.status, job.record_expiry(now), job.expiry_description()) for job in jobs}
    fields = FAILURE_FIELDS + (["requires_intervention"] if hasattr(model, "requires_intervention") else [])
    model.objects.bulk_update(jobs, fields)
    for state in (JobStatus.PENDING, JobStatus.FAILED):
        ids = [pk for pk, (_, target, _) in outcome.items() if target == state]
        if ids:
            model.objects.filter(pk__in=ids).update(status=state, updated_at=now)
    _write_logs(model, jobs, outcome, now)
    for job in jobs:
        after_failed_attempt(job, lease_expired=True)  # the kind's on_failed hook, as for a reported failure
        _say(result, job, outcome[job.pk][1], now)
    return len(jobs)


def _write_logs(model: type[LeasedJob], jobs: list[LeasedJob], outcome: dict[int, tuple[str, str, str]],
                now: datetime) -> None:
    """One StateLog row (transition ``expire``) and one DataTransferLog line per job, in two inserts.

    ``outcome``: job id → (status before, status after, description of the expiry).
    """
    content_type = ContentType.objects.get_for_model(model)
    StateLog.objects.bulk_create([
        StateLog(
            timestamp=now, source_state=outcome[job.pk][0], state=outcome[job.pk][1], transition="expire",
            content_type=content_type, object_id=job.pk,
            description=outcome[job.pk][2],
        )
        for job in jobs
    ])
    DataTransferLog.objects.bulk_create([
        DataTransferLog(
            content_type=content_type, object_id=job.pk, level=LogLevel.WARNING, created_at=now,
            message=short_log_message(f"{outcome[job.pk][2]}: {job.last_error}"),
            worker=job.lease_holder, attempt=job.attempts_total,
        )
        for job in jobs
    ])


def _say(result: PassResult, job: LeasedJob, target: str, now: datetime) -> None:
    holder = job.lease_holder or "worker"
    if target == JobStatus.PENDING:
        then = f"PENDING, retry in {int((job.next_attempt_at - now).total_seconds())} s"
    elif getattr(job, "requires_intervention", False):
        then = "FAILED, requires intervention"
    else:
        then = "FAILED, needs an operator"
    result.say(f"{job.KIND} #{job.pk}: lease of {holder} expired (attempt {job.attempts}/{job.max_attempts()}) "
               f"→ {then}")


def discard_expired_partial_data(*, now: datetime) -> PassResult:
    """Waiting jobs whose partial data outlived ``PARTIAL_MAX_AGE_SECONDS``: the next attempt starts over.

    ops-db cannot reach site storage: it forgets the data (``resume_bytes``) and says so in the
    job log; the workers holding the files remove them when they next ask ``work/partials/``,
    which answers from the same rule. Per job kind: one update and one bulk insert of log lines.
    """
    result = PassResult("partial data")
    cutoff = partial_data_cutoff(now)
    for model in job_kinds.models():
        stale = list(model.objects.partial_data_expired(cutoff).values_list("pk", "resume_bytes", "attempts"))
        if not stale:
            continue
        model.objects.filter(pk__in=[pk for pk, _, _ in stale]).update(resume_bytes=None, updated_at=now)
        content_type = ContentType.objects.get_for_model(model)
        age = human_duration(settings.PARTIAL_MAX_AGE_SECONDS)
        DataTransferLog.objects.bulk_create([
            DataTransferLog(content_type=content_type, object_id=pk, level=LogLevel.WARNING, created_at=now,
                            attempt=attempts,
                            message=short_log_message(f"partial data ({human_bytes(size)}) kept longer than {age}: "
                                                      "discarded; the next attempt starts from zero"))
            for pk, size, attempts in stale
        ])
        result.count += len(stale)
        result.say(f"{model.KIND}: partial data of {len(stale)} waiting job(s) older than {age} discarded")
    return result


def human_duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    return f"{seconds} s"
