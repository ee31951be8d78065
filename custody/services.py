"""Services of the ``delete`` job kind and of the operators' deletion switches.

A delete job's copies move with it: claimed → DELETION_IN_PROGRESS (the rule is checked again
first), reported → DELETED per copy (a file already gone counts as deleted, and the log says so)
or back to DELETION_SCHEDULED for another attempt, DELETION_FAILED after the last one. A failed
or expired attempt of the whole job does the same to all its copies.
"""

from collections import Counter
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from custody.models import DeletionItem, DeletionJob, DeletionOutcome
from custody.rule import deletable_bundle_copies_sql, deletable_raw_copies_sql, required_archive_sites
from opsdb.choices import CopyStatus, DeletionPolicy, JobStatus
from opsdb.copies import LastCopyProtected, copies_transition
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from opsdb.services import write_job_log
from transfers.models import DataTransferPackageCopy

COPY_FIELDS = {
    "raw_package_copy": RawDataPackageCopy,
    "transfer_package_copy": DataTransferPackageCopy,
    "file_copy": RawDataFileCopy,
}
# What a worker reports per copy.
REPORTED = {"deleted": DeletionOutcome.DELETED, "gone": DeletionOutcome.GONE, "failed": DeletionOutcome.FAILED}


def _copies(job: DeletionJob, field: str, item_ids=None):
    """The job's copies of one kind (through its items), as a queryset of the copy model."""
    items = DeletionItem.objects.filter(job=job, **{f"{field}__isnull": False})
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    return COPY_FIELDS[field].objects.filter(pk__in=items.values(f"{field}_id"))


# --- claim --------------------------------------------------------------------------------------

def deletion_job_start(job: DeletionJob) -> bool:
    """In the claim transaction: check the rule again and move the job's copies to DELETION_IN_PROGRESS.

    Copies the rule no longer allows (an archive copy went bad, a job now reads it, the location's
    policy is NEVER now) are kept: PRESENT again, their items KEPT. A job left with nothing to
    delete is cancelled. Returns whether the job may be claimed.
    """
    location = DataLocation.objects.get(pk=job.location_id)
    if not (location.deletion_enabled and not location.deletion_paused_reason):
        return False
    waiting = DeletionItem.objects.filter(job=job, outcome=DeletionOutcome.WAITING)
    if not waiting.exists():
        _revive_failed(job)
    _keep_no_longer_allowed(job, location, waiting)
    for field in COPY_FIELDS:
        copies_transition(_copies(job, field, waiting.values("pk")), "retry_deletion",
                          description=f"delete job #{job.pk} retried")
    try:
        with transaction.atomic():
            for field in COPY_FIELDS:
                copies_transition(_copies(job, field, waiting.values("pk")), "start_deletion",
                                  description=f"delete job #{job.pk} claimed")
    except LastCopyProtected:
        return False  # another copy went away meanwhile; the next claim checks the rule again
    if not waiting.exists():
        job.cancel(description="nothing left to delete: the rule no longer allows its copies")
        job.save()
        return False
    return True


def _revive_failed(job: DeletionJob) -> None:
    """An operator retried a FAILED job: its copies still DELETION_FAILED wait in it again."""
    for field, model in COPY_FIELDS.items():
        failed = model.objects.filter(status=CopyStatus.DELETION_FAILED).values("pk")
        DeletionItem.objects.filter(job=job, outcome=DeletionOutcome.FAILED, **{f"{field}_id__in": failed}).update(
            outcome=DeletionOutcome.WAITING, error="")


def _keep_no_longer_allowed(job: DeletionJob, location: DataLocation, waiting) -> None:
    required = required_archive_sites()
    for field, rule in (("raw_package_copy", deletable_raw_copies_sql),
                        ("transfer_package_copy", deletable_bundle_copies_sql)):
        ids = list(waiting.filter(**{f"{field}__isnull": False}).values_list(f"{field}_id", flat=True))
        if not ids:
            continue
        model = COPY_FIELDS[field]
        allowed = set()
        if location.deletion_policy != DeletionPolicy.NEVER:
            for status in (CopyStatus.DELETION_SCHEDULED, CopyStatus.DELETION_FAILED):
                allowed |= set(_ids(rule([location.pk], required, status=status, copy_ids=ids)))
        refused = [pk for pk in ids if pk not in allowed]
        if refused:
            copies_transition(model.objects.filter(pk__in=refused), "keep",
                              description=f"delete job #{job.pk}: the deletion rule no longer allows it")
            waiting.filter(**{f"{field}_id__in": refused}).update(outcome=DeletionOutcome.KEPT)


def _ids(sql: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM ({sql}) x")
        return [row[0] for row in cursor.fetchall()]


# --- complete -----------------------------------------------------------------------------------

def deletion_job_report(*, job: DeletionJob, results: list[dict], worker: str, now: datetime | None = None) -> None:
    """Record a worker's per-copy report (inside ``job_complete``): every copy of the job, once.

    ``results``: ``{"id": <item id>, "outcome": "deleted" | "gone" | "failed", "error": "…"}``.
    Raises ValidationError (nothing changed) for a report that names copies the job does not
    have, names one twice, or leaves one out.
    """
    now = now or timezone.now()
    waiting = dict(DeletionItem.objects.filter(job=job, outcome=DeletionOutcome.WAITING).values_list("pk", "path"))
    reported = [r["id"] for r in results]
    problems = []
    if unknown := sorted(set(reported) - set(waiting)):
        problems.append(f"not copies this job deletes: {unknown[:20]}")
    if twice := sorted(k for k, n in Counter(reported).items() if n > 1):
        problems.append(f"reported more than once: {twice[:20]}")
    if missing := sorted(set(waiting) - set(reported)):
        problems.append(f"not reported: {missing[:20]}")
    if problems:
        raise ValidationError({"copies": problems})
    by_outcome: dict[str, list[int]] = {}
    for r in results:
        by_outcome.setdefault(REPORTED[r["outcome"]], []).append(r["id"])
    _record_removed(job, by_outcome, worker, now)
    _record_failed(job, [r for r in results if r["outcome"] == "failed"], worker, now)
    counts = {k: len(v) for k, v in by_outcome.items()}
    write_job_log(job=job, message=(
        f"{counts.get(DeletionOutcome.DELETED, 0)} deleted, {counts.get(DeletionOutcome.GONE, 0)} already gone "
        f"(counted as deleted), {counts.get(DeletionOutcome.FAILED, 0)} failed at {job.location}"), worker=worker)


def _record_removed(job: DeletionJob, by_outcome: dict[str, list[int]], worker: str, now: datetime) -> None:
    for outcome, why in ((DeletionOutcome.DELETED, f"deleted by {worker}"),
                         (DeletionOutcome.GONE, f"the file was already gone ({worker}): counted as deleted")):
        ids = by_outcome.get(outcome, [])
        if not ids:
            continue
        DeletionItem.objects.filter(pk__in=ids).update(outcome=outcome)
        for field in COPY_FIELDS:
            copies_transition(_copies(job, field, ids), "mark_deleted", description=why, now=now)


def _record_failed(job: DeletionJob, failed: list[dict], worker: str, now: datetime) -> None:
    if not failed:
        return
    errors = {r["id"]: (r.get("error") or "no error given")[:500] for r in failed}
    for pk, error in errors.items():
        DeletionItem.objects.filter(pk=pk).update(outcome=DeletionOutcome.FAILED, error=error)
    _release_or_fail(job, list(errors), f"{worker}: {next(iter(errors.values()))}", now)


def _release_or_fail(job: DeletionJob, item_ids, why: str, now: datetime) -> int:
    """The copies of these items: another attempt (DELETION_SCHEDULED) or, attempts spent, DELETION_FAILED."""
    last = settings.JOB_MAX_ATTEMPTS - 1
    moved = 0
    for field in COPY_FIELDS:
        copies = _copies(job, field, item_ids).filter(status=CopyStatus.DELETION_IN_PROGRESS)
        moved += copies_transition(copies.filter(deletion_failures__gte=last), "fail_deletion",
                                   description=why[:500], now=now)
        moved += copies_transition(copies.filter(deletion_failures__lt=last), "release_deletion",
                                   description=why[:500], now=now)
    DataLocation.objects.filter(pk=job.location_id).update(
        deletion_failures_recent=F("deletion_failures_recent") + moved, deletion_last_error=why[:500])
    return moved


# --- a failed attempt of the whole job ----------------------------------------------------------

def deletion_job_failed(job: DeletionJob, *, lease_expired: bool = False) -> None:
    """After a failed attempt (reported or a lease that ran out): the copies wait, or fail with the job."""
    why = job.last_error or ("lease expired" if lease_expired else "attempt failed")
    target = "fail_deletion" if job.status == JobStatus.FAILED else "release_deletion"
    moved = 0
    for field in COPY_FIELDS:
        moved += copies_transition(_copies(job, field).filter(status=CopyStatus.DELETION_IN_PROGRESS), target,
                                   description=f"delete job #{job.pk}: {why}"[:500])
    if job.status == JobStatus.FAILED:
        # Its copies are DELETION_FAILED: an operator retries the job, or the copies one by one.
        DeletionItem.objects.filter(job=job, outcome=DeletionOutcome.WAITING).update(
            outcome=DeletionOutcome.FAILED, error=why[:500])
    DataLocation.objects.filter(pk=job.location_id).update(
        deletion_failures_recent=F("deletion_failures_recent") + moved, deletion_last_error=why[:500])


# --- operators ----------------------------------------------------------------------------------

@transaction.atomic
def location_deletion_resume(*, location: DataLocation, by_name: str) -> DataLocation:
    """Resume deletion at a location that paused itself; the failure count starts from zero."""
    DataLocation.objects.filter(pk=location.pk).update(deletion_paused_reason="", deletion_paused_at=None,
                                                       deletion_failures_recent=0)
    location.refresh_from_db()
    return location


@transaction.atomic
def location_deletion_switch(*, location: DataLocation, enabled: bool) -> DataLocation:
    """The operators' per-location switch: off, nothing there is scheduled for deletion nor deleted."""
    location.deletion_enabled = enabled
    location.save(update_fields=["deletion_enabled"])
    return location
