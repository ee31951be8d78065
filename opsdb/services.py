"""Services that drive every leased job: claim, heartbeat, complete, fail, expire, retry, cancel.

Admin actions, API views and the scheduler all call these; none of them changes a status itself.
Kind-specific results (copies, follow-up work) are applied by the ``apply`` callback a caller
passes to ``job_complete``, inside the same transaction.
"""

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet, Value
from django.utils import timezone
from django_fsm import ConcurrentTransition

from opsdb.choices import CopyStatus, JobStatus, LogLevel
from opsdb.leases import LeasedJob
from opsdb.models import LOG_MESSAGE_MAX_LENGTH, DataTransferLog
from opsdb.planning import human_bytes
from opsdb.prepared import PreparedQuery, insert_rows, update_row
from opsdb.registry import job_kinds
from opsdb.statelogs import collecting, state_logs_in_bulk
from opsdb.work import JobKindHandler

CLAIM_RETRIES = 5


class LeaseConflict(Exception):
    """The caller does not hold the job's lease: it expired, was replaced, or never existed."""

    def __init__(self, job: LeasedJob, message: str = "the lease on this job is no longer held"):
        self.job = job
        super().__init__(message)


def new_lease_token() -> str:
    return secrets.token_urlsafe(24)


def lease_expiry(lease_seconds: int | None = None, now: datetime | None = None) -> datetime:
    seconds = lease_seconds or settings.JOB_DEFAULT_LEASE_SECONDS
    seconds = max(1, min(int(seconds), settings.JOB_MAX_LEASE_SECONDS))
    return (now or timezone.now()) + timedelta(seconds=seconds)


def lock_job(job: LeasedJob) -> LeasedJob:
    """Re-read ``job`` with a row lock (PostgreSQL) inside the caller's transaction."""
    return type(job).objects.select_for_update().get(pk=job.pk)


def _check_locked(locked: bool) -> None:
    """``locked=True`` promises a row lock taken in the caller's transaction, so there must be one."""
    if locked and not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked=True needs the caller's transaction that holds the row lock")


def write_job_log(*, job: LeasedJob, message: str, level: str = LogLevel.INFO, log_path: str = "",
                  worker: str = "", attempt: int | None = None) -> None:
    """A short DataTransferLog line about ``job``; the detail stays in the file at ``log_path``.

    ``attempt``: the attempt it is about, counted across operators' retries (default: the last failed one).
    """
    insert_rows([job_log_line(job=job, message=message, level=level, log_path=log_path, worker=worker,
                              attempt=attempt)])


def job_log_line(*, job: LeasedJob, message: str, level: str = LogLevel.INFO, log_path: str = "",
                 worker: str = "", attempt: int | None = None) -> DataTransferLog:
    """``write_job_log``'s row, unsaved."""
    return DataTransferLog(
        content_type=ContentType.objects.get_for_model(type(job)), object_id=job.pk, level=level,
        message=short_log_message(message), log_path=log_path, worker=worker or job.lease_holder,
        attempt=job.attempts_total if attempt is None else attempt,
    )


def short_log_message(message: str) -> str:
    """A log line's message cut to what the job log keeps (the detail belongs in the log file)."""
    return message[:LOG_MESSAGE_MAX_LENGTH]


@transaction.atomic
def job_claim(*, job: LeasedJob, worker: str, user=None, lease_seconds: int | None = None) -> LeasedJob:
    """PENDING → ACTIVE under a fresh lease held by ``worker``."""
    return _claim(job=job, worker=worker, user=user, lease_seconds=lease_seconds)


def _claim(*, job: LeasedJob, worker: str, user, lease_seconds: int | None, request_id: str = "") -> LeasedJob:
    """``job_claim`` in the caller's transaction (``claim_next``'s: no savepoint needed inside it)."""
    transition_and_save(job, lambda: job.claim(
        worker=worker, token=new_lease_token(), expires_at=lease_expiry(lease_seconds), user=user,
        request_id=request_id, by=user, description=f"claimed by {worker}",
    ))
    return job


def transition_and_save(job: LeasedJob, transition: Callable[[], object], *, also: Sequence = ()) -> None:
    """Run ``transition`` (one of the job's ``@transition`` methods), then save the job with its state log.

    The state log row django-fsm-log makes for the transition, and the unsaved rows ``also`` (a job
    log line), are written with the job's UPDATE (``save_transition``): on PostgreSQL in the same
    statement. Inside a ``state_logs_in_bulk()`` block the state log is left to the block.
    """
    source = job.status
    if collecting():
        transition()
        save_transition(job, source, also=also)
        return
    with state_logs_in_bulk() as logs:
        transition()
        rows = [*logs, *also]
        logs.clear()  # written below, with the job's row
        save_transition(job, source, also=rows)


def save_transition(job: LeasedJob, source: str, *, also: Sequence = ()) -> None:
    """``job.save()`` after a transition from ``source``, as one UPDATE whose SQL is made once.

    Every column is written (what the kind's hooks set on the job too), as ``Model.save`` does; as
    ``ConcurrentTransitionMixin.save`` does, only while the row still has the status ``source``:
    else ConcurrentTransition (the caller's transaction is rolled back). The statement is made once
    per server thread (``opsdb.prepared.update_row``), not compiled for all 27 columns at each save.
    ``also``: unsaved rows inserted with it (``update_row``), only if the job's row was updated.
    """
    fields = [f.attname for f in type(job)._meta.concrete_fields if not f.primary_key]
    if update_row(job, fields, where={"status": source}, also=also) != 1:
        raise ConcurrentTransition("Cannot save object! The state has been changed since fetched from the database!")
    job._update_initial_state()


def claim_next(*, queryset: QuerySet | Callable[[], QuerySet], worker: str, user=None, lease_seconds: int | None = None,
               now: datetime | None = None, guard: Callable[[LeasedJob], bool] | None = None,
               request_id: str = "", lock_first: Callable[[datetime], LeasedJob | None] | None = None,
               ) -> LeasedJob | None:
    """Claim the first due job of ``queryset`` (highest priority, then oldest); None when none is due.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent claimers pass each other by. SQLite: the
    IMMEDIATE transaction serialises claimers and the state check in the UPDATE catches the rest.
    ``guard`` runs inside the claim transaction once the job row is locked; when it returns False
    (e.g. the job's route is at its concurrency limit) the job is left alone and the next one tried.
    ``lock_first``: the same locking read of ``queryset``'s first due job, prepared (``ClaimQuery``);
    ``queryset`` may then be a function that makes it, called only when a guard refuses a job.
    """
    now = now or timezone.now()

    def plain() -> QuerySet:
        return (queryset() if callable(queryset) else queryset).due(now).order_by(*CLAIM_ORDER)

    candidates = None if lock_first is not None else plain()
    skip_locked = connection.features.has_select_for_update_skip_locked
    for _ in range(CLAIM_RETRIES):
        try:
            with transaction.atomic():
                if candidates is None:
                    job = lock_first(now)
                elif skip_locked:
                    job = candidates.select_for_update(skip_locked=True, of=("self",)).first()
                else:
                    job = candidates.first()
                if job is None:
                    return None
                if guard is not None and not guard(job):
                    # The next ones without the refused job: the plain queryset from here on.
                    candidates = (plain() if candidates is None else candidates).exclude(pk=job.pk)
                    continue
                return _claim(job=job, worker=worker, user=user, lease_seconds=lease_seconds,
                              request_id=request_id)
        except ConcurrentTransition:
            continue
    return None


def claimed_by_request(*, querysets: dict[str, QuerySet], worker: str, user, request_id: str,
                       now: datetime | None = None) -> tuple[str, int] | None:
    """(kind, id) of the job whose lease a claim with this ``request_id`` took and still holds; None if none.

    A worker whose claim answer was lost (a dropped connection, a timeout) repeats the claim with
    the same request id and gets the same job and lease back, instead of leaving it ACTIVE with
    nobody until the lease expires. The key is the worker's name and request id, for the same
    account. One query over every kind (``querysets``: kind → its jobs).
    """
    held = held_by_request(querysets=querysets, worker=worker, user=user, request_id=request_id, now=now, limit=1)
    return held[0] if held else None


def held_by_request(*, querysets: dict[str, QuerySet], worker: str, user, request_id: str,
                    now: datetime | None = None, limit: int = 1) -> list[tuple[str, int]]:
    """(kind, id) of up to ``limit`` jobs whose leases a claim with this ``request_id`` took and still holds.

    A batch claim (``max_jobs``) gives all its jobs the same request id: its repeat gets them all.
    """
    if not request_id or not querysets:
        return []
    now = now or timezone.now()
    held = [
        queryset.filter(status=JobStatus.ACTIVE, lease_holder=worker, lease_user=user, claim_request_id=request_id,
                        lease_expires_at__gte=now).order_by().annotate(kind=Value(kind)).values_list("kind", "pk")
        for kind, queryset in querysets.items()
    ]
    first, *rest = held
    return list((first.union(*rest, all=True) if rest else first)[:limit])


CLAIM_ORDER = ("-priority", "created_at", "pk")  # within a kind: higher priority, then the oldest


def claim_for_worker(*, handlers: Sequence[JobKindHandler], worker: str, user=None,
                     site_ids: Sequence[int] | None = None, methods: Sequence[str] | None = None,
                     lease_seconds: int | None = None, now: datetime | None = None, request_id: str = "",
                     ) -> tuple[JobKindHandler, LeasedJob] | None:
    """Claim the next job of these kinds for ``worker`` (the claim-priority rule); None when none is due.

    Each kind's first due job (``CLAIM_ORDER``) has a claim deadline: the time it became due plus
    the kind's position in ``settings.JOB_KINDS`` times ``JOB_CLAIM_KIND_STEP_SECONDS``. The kind
    whose deadline is earliest is tried first (ties: the declared order). So ``stage``, declared
    first, goes ahead of bulk work that became due less than a step before it, however long the
    bulk backlog; and a kind declared later is passed over for at most its position's steps,
    never for ever. With one kind there is nothing to rank.
    """
    now = now or timezone.now()
    for query in claim_queries(handlers=handlers, site_ids=site_ids, methods=methods, now=now):
        job = claim_next(queryset=query.queryset, worker=worker, user=user, lease_seconds=lease_seconds, now=now,
                         guard=query.handler.claim_guard, request_id=request_id, lock_first=query.lock_first)
        if job is not None:
            return query.handler, job
    return None


def candidate_queryset(handler: JobKindHandler, site_ids: Sequence[int] | None,
                       methods: Sequence[str] | None) -> QuerySet:
    """A kind's jobs that this claimer (its sites, its transfer methods) may lock, due or not."""
    # Job rows only: joining the payload's tables into the locking query would make PostgreSQL
    # hash whole tables (raw packages) per claim; the payload is read once the job is claimed.
    queryset = handler.model.objects.all()
    if site_ids is not None:
        queryset = handler.at_sites(queryset, site_ids)
    if methods:
        queryset = handler.for_methods(queryset, methods)
    return handler.claimable(queryset)


class ClaimQuery:
    """A kind's claimable jobs for one claimer, with the claim's two reads prepared (``opsdb.prepared``).

    The SQL of "the first due job, locked" and "when the first due job became due" is made once
    per server thread for each kind and shape of claimer (with or without sites, methods), not at
    every claim; a kind whose ``claimable`` reads the clock or the database while it builds its
    filter is evaluated the plain way (``PreparedQuery``).
    """

    _prepared: dict[tuple, PreparedQuery] = {}

    def __init__(self, handler: JobKindHandler, site_ids: Sequence[int] | None, methods: Sequence[str] | None):
        self.handler = handler
        self.site_ids = None if site_ids is None else list(site_ids)
        # Methods narrow only the kinds that use them (transfers): the others' SQL does not depend on them.
        uses_methods = type(handler).for_methods is not JobKindHandler.for_methods
        self.methods = list(methods) if methods and uses_methods else None
        self.values = [v for v in (self.site_ids, self.methods) if v is not None]
        self._key = (type(handler), self.site_ids is not None, self.methods is not None)

    def _query(self, name: str, limit: int = 1) -> PreparedQuery:
        key = (*self._key, name, limit)
        if key not in self._prepared:
            handler, sites, methods = self.handler, self.site_ids is not None, self.methods is not None

            def build(now: datetime, *lists: list) -> QuerySet:
                values = iter(lists)
                site_ids = next(values) if sites else None
                wanted = next(values) if methods else None
                queryset = candidate_queryset(handler, site_ids, wanted).due(now).order_by(*CLAIM_ORDER)
                if name == "head":
                    return queryset.only("pk", "created_at", "next_attempt_at")[:1]
                if connection.features.has_select_for_update_skip_locked:
                    queryset = queryset.select_for_update(skip_locked=True, of=("self",))
                return queryset[:limit]

            self._prepared[key] = PreparedQuery(build)
        return self._prepared[key]

    def queryset(self) -> QuerySet:
        return candidate_queryset(self.handler, self.site_ids, self.methods)

    def lock_first(self, now: datetime) -> LeasedJob | None:
        """The first due job, row-locked (SKIP LOCKED on PostgreSQL); None when none is due."""
        jobs = self.lock_due(now, 1)
        return jobs[0] if jobs else None

    def lock_due(self, now: datetime, limit: int) -> list[LeasedJob]:
        """Up to ``limit`` due jobs in ``CLAIM_ORDER``, row-locked (SKIP LOCKED on PostgreSQL)."""
        return self._query("lock", limit)(now, *self.values)

    def first_due_at(self, now: datetime) -> datetime | None:
        """When the first due job (``CLAIM_ORDER``) became due; None when none is due."""
        jobs = self._query("head")(now, *self.values)
        return max(jobs[0].created_at, jobs[0].next_attempt_at or jobs[0].created_at) if jobs else None


def claim_queries(*, handlers: Sequence[JobKindHandler], site_ids: Sequence[int] | None,
                  methods: Sequence[str] | None, now: datetime) -> list[ClaimQuery]:
    """Each kind's claimable jobs for this claimer, kinds in the order they are tried (the claim-priority rule)."""
    queries = [ClaimQuery(handler, site_ids, methods) for handler in handlers]
    return _ranked(queries, now) if len(queries) > 1 else queries


def _ranked(queries: list[ClaimQuery], now: datetime) -> list[ClaimQuery]:
    """The kinds with a due job, earliest claim deadline first (one query per kind, no locks)."""
    step = timedelta(seconds=settings.JOB_CLAIM_KIND_STEP_SECONDS)
    ranked = []
    for query in queries:
        due_at = query.first_due_at(now)
        if due_at is None:
            continue
        position = job_kinds.position(query.handler.kind)
        ranked.append((due_at + position * step, position, query))
    ranked.sort(key=lambda entry: entry[:2])
    return [query for _, _, query in ranked]


def job_heartbeat(*, job: LeasedJob, lease_token: str, bytes_done: int | None = None,
                  lease_seconds: int | None = None, resumed_from: int | None = None) -> LeasedJob:
    """Extend a held lease (and record progress); LeaseConflict when the lease is not held.

    ``resumed_from``: the bytes this attempt kept from an earlier one; recorded, with a log line
    ("resumed at 37.2 TB of 50.0 TB"), by the first heartbeat of the attempt that carries it.
    """
    now = timezone.now()
    values = {"lease_expires_at": lease_expiry(lease_seconds, now), "heartbeat_at": now}
    if bytes_done is not None:
        values["bytes_done"] = bytes_done
    held = type(job).objects.filter(
        pk=job.pk, status=JobStatus.ACTIVE, lease_token=lease_token, lease_expires_at__gte=now
    )
    if not lease_token or held.update(**values) != 1:
        job.refresh_from_db()
        raise LeaseConflict(job)
    if job.status != JobStatus.ACTIVE or job.lease_token != lease_token:
        job.refresh_from_db()  # the caller's copy predates the claim it now reports on
    else:
        # The UPDATE matched the held lease: the row is the caller's copy with ``values``, no re-read needed.
        for field, value in values.items():
            setattr(job, field, value)
    if resumed_from is not None and held.filter(resumed_from__isnull=True).update(resumed_from=resumed_from):
        job.resumed_from = resumed_from
        _log_resume(job)
    return job


def _log_resume(job: LeasedJob) -> None:
    """The job log line that tells operators what an interruption cost."""
    total = job_kinds.for_model(type(job)).size_of(job)
    of = f" of {human_bytes(total)}" if total else ""
    attempt = f"attempt {job.attempts + 1}"
    if job.resumed_from:
        before = f"; the last attempt had moved {human_bytes(job.resume_bytes)}" if job.resume_bytes else ""
        write_job_log(job=job, message=f"resumed at {human_bytes(job.resumed_from)}{of} ({attempt}{before})")
    elif job.resume_bytes:
        write_job_log(job=job, level=LogLevel.WARNING,
                      message=f"started over from zero{of} ({attempt}): the {human_bytes(job.resume_bytes)} the "
                              "last attempt had moved could not be kept")


def job_complete(*, job: LeasedJob, lease_token: str, by=None, log_path: str = "",
                 apply: Callable[[LeasedJob], None] | None = None, locked: bool = False) -> tuple[LeasedJob, bool]:
    """ACTIVE → done, applying the kind's result with ``apply``; returns (job, changed).

    A repeat of the report that already completed the job (same lease token) changes nothing.
    ``locked``: the caller read ``job`` with ``select_for_update`` in its current transaction
    (the API does, with what ``apply`` needs), so it is not read again, and no savepoint is made:
    the caller's transaction is the report's and rolls back whole on any error.
    """
    _check_locked(locked)
    with transaction.atomic(savepoint=not locked):
        return _complete(job=job if locked else lock_job(job), lease_token=lease_token, by=by, log_path=log_path,
                         apply=apply)


def _complete(*, job: LeasedJob, lease_token: str, by, log_path: str,
              apply: Callable[[LeasedJob], None] | None) -> tuple[LeasedJob, bool]:
    if job.is_done and lease_token and job.lease_token == lease_token:
        return job, False
    if not job.lease_is_held(lease_token):
        raise LeaseConflict(job)
    if apply is not None:
        apply(job)
    worker = job.lease_holder
    line = job_log_line(job=job, message=f"{job.KIND} completed by {worker}", log_path=log_path, worker=worker,
                        attempt=job.attempts_total + 1)
    transition_and_save(job, lambda: job.complete(log_path=log_path, by=by, description=f"completed by {worker}"),
                        also=[line])
    return job, True


def job_fail(*, job: LeasedJob, lease_token: str, error: str, log_path: str = "", retryable: bool = True,
             by=None, locked: bool = False, source_corrupt: bool = False) -> tuple[LeasedJob, bool]:
    """A failed attempt: ACTIVE → PENDING with backoff, or FAILED when attempts are spent; (job, changed).

    A repeat of the report that already failed this attempt (same lease token) changes nothing.
    ``locked`` as for ``job_complete``. ``source_corrupt``: see ``_fail``.
    """
    _check_locked(locked)
    with transaction.atomic(savepoint=not locked):
        return _fail(job=job if locked else lock_job(job), lease_token=lease_token, error=error, log_path=log_path,
                     retryable=retryable, by=by, source_corrupt=source_corrupt)


def _fail(*, job: LeasedJob, lease_token: str, error: str, log_path: str, retryable: bool,
          by, source_corrupt: bool = False) -> tuple[LeasedJob, bool]:
    """``source_corrupt``: the worker found the copy the job reads corrupt (kinds with ``reads_source_copy``).

    The copy leaves service (PRESENT → MISMATCH, logged) so nothing plans from it; the job itself is
    not at fault: it waits (PENDING, held by its kind's claim filter) until a good copy is back, and
    the failure says nothing about the route.
    """
    if job.status in (JobStatus.PENDING, JobStatus.FAILED) and lease_token and job.lease_token == lease_token:
        return job, False
    if not job.lease_is_held(lease_token):
        raise LeaseConflict(job)
    handler = job_kinds.for_model(type(job))
    if source_corrupt and not handler.reads_source_copy:
        raise ValidationError({"source_corrupt": f"{job.KIND} jobs read no stored copy that could be corrupt."})
    worker = job.lease_holder
    job.fail(error=error, log_path=log_path, retryable=retryable or source_corrupt, by=by,
             description=short_log_message(f"{worker}: {error}"))
    save_transition(job, JobStatus.ACTIVE)
    if source_corrupt:
        outcome = "waits for a good copy" if job.status == JobStatus.PENDING else "needs an operator"
    else:
        outcome = "will retry" if job.status == JobStatus.PENDING else "needs an operator"
    if job.bytes_done:
        outcome += f"; {human_bytes(job.bytes_done)} moved"
    write_job_log(job=job, level=LogLevel.ERROR, message=f"attempt {job.attempts} failed ({outcome}): {error}",
                  log_path=log_path, worker=worker)
    if source_corrupt:
        _take_out_of_service(handler, job, worker=worker, error=error, by=by)
    after_failed_attempt(job, retryable=retryable and not source_corrupt)
    return job, True


def _take_out_of_service(handler: JobKindHandler, job: LeasedJob, *, worker: str, error: str, by) -> None:
    """The copy a worker found corrupt: PRESENT → MISMATCH (logged), and a line in the job's log."""
    from opsdb.copies import copy_transition

    copy = handler.source_copy(job)
    if copy is None:
        write_job_log(job=job, level=LogLevel.WARNING, worker=worker,
                      message="reported its source copy corrupt, but no copy record is known there")
        return
    if copy.status != CopyStatus.PRESENT:
        return  # already out of service (another reader said so first), or on its way out
    copy_transition(copy=copy, transition="mark_mismatch", by=by,
                    description=short_log_message(f"found corrupt by {worker} ({job.KIND} #{job.pk}): {error}"))
    write_job_log(job=job, level=LogLevel.WARNING, worker=worker,
                  message=f"source copy {copy} taken out of service (MISMATCH); it is fetched again from a good copy")


def after_failed_attempt(job: LeasedJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
    """Let the job's kind react to a failed attempt (``on_failed``: staging's email, a route's health).

    ``retryable``: what the worker reported; ``lease_expired``: nobody reported, the lease ran out.
    """
    job_kinds.for_model(type(job)).on_failed(job, retryable=retryable, lease_expired=lease_expired)


@transaction.atomic
def job_expire(*, job: LeasedJob, now: datetime | None = None) -> bool:
    """ACTIVE → PENDING/FAILED when the lease ran out; False when it is no longer expired."""
    job = lock_job(job)
    if job.status != JobStatus.ACTIVE or job.lease_expires_at is None or job.lease_expires_at >= (
        now or timezone.now()
    ):
        return False
    worker, description = job.lease_holder, job.expiry_description()
    job.expire(description=description)
    job.save()
    write_job_log(job=job, level=LogLevel.WARNING, message=f"{description}: {job.last_error}", worker=worker)
    after_failed_attempt(job, lease_expired=True)
    return True


@transaction.atomic
def job_retry(*, job: LeasedJob, by=None, reason: str = "") -> LeasedJob:
    """FAILED → PENDING with fresh attempts (an operator's decision)."""
    job = lock_job(job)
    job.retry(by=by, description=reason or "retried by an operator")
    job.save()
    return job


@transaction.atomic
def job_cancel(*, job: LeasedJob, by=None, reason: str = "") -> LeasedJob:
    """PENDING/FAILED → CANCELLED."""
    job = lock_job(job)
    job.cancel(by=by, description=reason or "cancelled")
    job.save()
    return job
