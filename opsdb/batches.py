"""Batches of the work protocol: many jobs claimed, or reported on, in one request.

A worker with many small jobs (fixity audits, deletions, small staging files) claims up to
``settings.WORK_BATCH_MAX_JOBS`` jobs at once (``claim_jobs``) and reports on many in one request
(``jobs_report``). The guarantees are those of one job (``opsdb.services``): one lease per job,
status changes through the jobs' transitions, each recorded (django-fsm-log, in one insert:
``opsdb.statelogs``), 409 for a lease not held, a repeated report changes nothing, per-route
limits. The cost is a fixed number of statements per batch — one locking read, one UPDATE of the
job rows, one insert of state logs, one of job log lines, and the kind's ``apply_results`` —
not a few per job. Kinds that check each claim under a lock (``claim_guard``: a transfer's
route limit) are claimed one by one, and failure reports go one by one: both are rare in bulk.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, CharField, F, QuerySet, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django_fsm import ConcurrentTransition

from opsdb.choices import JobStatus
from opsdb.leases import LeasedJob
from opsdb.models import DataTransferLog
from opsdb.prepared import PreparedQuery, insert_rows, statement_made_once
from opsdb.registry import job_kinds
from opsdb.services import (
    CLAIM_RETRIES,
    ClaimQuery,
    LeaseConflict,
    _fail,
    claim_next,
    claim_queries,
    lease_expiry,
    new_lease_token,
    short_log_message,
)
from opsdb.statelogs import state_logs_in_bulk
from opsdb.work import JobKindHandler

COMPLETE, FAIL = "complete", "fail"


def claim_jobs(*, handlers: Sequence[JobKindHandler], worker: str, max_jobs: int, user=None,
               site_ids: Sequence[int] | None = None, methods: Sequence[str] | None = None,
               lease_seconds: int | None = None, request_id: str = "",
               now: datetime | None = None) -> list[tuple[JobKindHandler, LeasedJob]]:
    """Claim up to ``max_jobs`` due jobs for ``worker``: the kinds in claim-priority order, each kind's jobs in
    ``CLAIM_ORDER``, as many of the first kind as there are before the next kind is taken.

    Every job gets its own lease (token), all with the same expiry and ``request_id``.
    """
    now = now or timezone.now()
    claimed: list[tuple[JobKindHandler, LeasedJob]] = []
    for query in claim_queries(handlers=handlers, site_ids=site_ids, methods=methods, now=now):
        wanted = max_jobs - len(claimed)
        if wanted <= 0:
            break
        if query.handler.guards_claims:
            jobs = _claim_one_by_one(query, wanted, worker=worker, user=user,
                                     lease_seconds=lease_seconds, request_id=request_id, now=now)
        else:
            jobs = _claim_in_bulk(query, wanted, worker=worker, user=user, lease_seconds=lease_seconds,
                                  request_id=request_id, now=now)
        claimed += [(query.handler, job) for job in jobs]
    return claimed


def _claim_one_by_one(query: ClaimQuery, wanted: int, **claim) -> list[LeasedJob]:
    jobs = []
    while len(jobs) < wanted:
        job = claim_next(queryset=query.queryset, guard=query.handler.claim_guard, lock_first=query.lock_first,
                         **claim)
        if job is None:
            break
        jobs.append(job)
    return jobs


def _claim_in_bulk(query: ClaimQuery, wanted: int, *, worker: str, user, lease_seconds: int | None,
                   request_id: str, now: datetime) -> list[LeasedJob]:
    """One locking read (SKIP LOCKED on PostgreSQL), the ``claim`` transitions, one UPDATE, one state-log insert.

    SQLite: the IMMEDIATE transaction serialises claimers; the UPDATE's state check catches the rest.
    """
    expires_at = lease_expiry(lease_seconds, now)
    for _ in range(CLAIM_RETRIES):
        try:
            with transaction.atomic():
                jobs = query.lock_due(now, wanted)
                if not jobs:
                    return []
                # One secret for the batch, made each job's own by its id: the UPDATE sets every token
                # with one expression rather than a CASE over the jobs.
                secret = new_lease_token()
                with state_logs_in_bulk():
                    before = _snapshot(jobs)
                    for job in jobs:
                        job.claim(worker=worker, token=f"{secret}.{job.pk}", expires_at=expires_at, user=user,
                                  request_id=request_id, by=user, description=f"claimed by {worker}")
                        job.claimed_at = job.heartbeat_at = now  # the batch's claim time, one value for all
                    save_in_bulk(jobs, before, source=JobStatus.PENDING, now=now, token_prefix=f"{secret}.")
                return jobs
        except ConcurrentTransition:
            continue
    return []


def _snapshot(jobs: Sequence[LeasedJob]) -> dict[int, dict[str, Any]]:
    fields = type(jobs[0])._meta.concrete_fields
    return {job.pk: {f.attname: getattr(job, f.attname) for f in fields} for job in jobs}


def save_in_bulk(jobs: Sequence[LeasedJob], before: dict[int, dict[str, Any]], *, source: str,
                 now: datetime, token_prefix: str | None = None) -> None:
    """Write what the transitions (and results) changed on ``jobs`` in one UPDATE; each row must still be in ``source``.

    A field with the same new value on every job is set plainly, one that differs (a log path)
    with ``CASE WHEN id = … THEN …``; unchanged fields are left alone. A row that left ``source``
    meanwhile (it cannot, under the caller's row locks) raises ConcurrentTransition: all is undone.
    ``token_prefix``: each job's lease token is this prefix followed by its id, set by SQL.
    When every changed field has one value for all jobs (claims always, reports mostly) the UPDATE
    is made once per model, column set and number of jobs (``_uniform_update``), not compiled by
    the ORM at each batch.
    """
    model = type(jobs[0])
    for job in jobs:
        job.updated_at = now
    changed = []
    for model_field in model._meta.concrete_fields:
        name = model_field.attname
        new = [(job.pk, getattr(job, name)) for job in jobs]
        if model_field.primary_key or (token_prefix is not None and name == "lease_token") or all(
                value == before[pk][name] for pk, value in new):
            continue
        changed.append((model_field, new))
    if all(all(value == new[0][1] for _, value in new) for _, new in changed):
        updated = _uniform_update(model, [(f, new[0][1]) for f, new in changed], [job.pk for job in jobs],
                                  source=source, token_prefix=token_prefix)
    else:
        updated = _orm_update(model, changed, [job.pk for job in jobs], source=source, token_prefix=token_prefix)
    if updated != len(jobs):
        raise ConcurrentTransition(f"{len(jobs) - updated} of {len(jobs)} {model.KIND} jobs changed meanwhile")


def _uniform_update(model, values: list[tuple[Any, Any]], pks: list[int], *, source: str,
                    token_prefix: str | None) -> int:
    """``UPDATE … SET col = %s, … [, lease_token = %s || CAST(id AS TEXT)] WHERE id IN (…) AND status = %s``."""
    meta = model._meta
    key = ("bulk-update", model, tuple(f.attname for f, _ in values), token_prefix is not None, len(pks))

    def make() -> str:
        quote = connection.ops.quote_name
        sets = [f"{quote(f.column)} = %s" for f, _ in values]
        if token_prefix is not None:
            sets.append(f"{quote(meta.get_field('lease_token').column)} = %s || CAST({quote(meta.pk.column)} AS TEXT)")
        return (f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} WHERE {quote(meta.pk.column)} "
                f"IN ({', '.join(['%s'] * len(pks))}) AND {quote(meta.get_field('status').column)} = %s")

    sql = statement_made_once(connection, key, make)
    params = [f.get_db_prep_save(value, connection) for f, value in values]
    params += [token_prefix] if token_prefix is not None else []
    params += [meta.pk.get_db_prep_value(pk, connection) for pk in pks] + [source]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _orm_update(model, changed: list, pks: list[int], *, source: str, token_prefix: str | None) -> int:
    """The same UPDATE through the ORM, with ``CASE`` for the fields whose values differ between jobs."""
    values = {}
    if token_prefix is not None:
        values["lease_token"] = Concat(Value(token_prefix), Cast("pk", output_field=CharField()))
    for model_field, new in changed:
        output = model_field.target_field if model_field.is_relation else model_field
        if all(value == new[0][1] for _, value in new):
            values[model_field.attname] = Value(new[0][1], output_field=output)
        else:
            values[model_field.attname] = Case(*(When(pk=pk, then=Value(value, output_field=output))
                                                 for pk, value in new), default=F(model_field.attname),
                                               output_field=output)
    return model.objects.filter(pk__in=pks, status=source).update(**values)


@dataclass
class Report:
    """One item of a batch report: ``complete`` with the kind's validated ``result``, or ``fail``."""

    kind: str
    pk: int
    action: str
    lease_token: str
    log_path: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retryable: bool = True
    source_corrupt: bool = False


@dataclass
class Answer:
    """What became of one item: 200 (``job`` in its new or unchanged state), 404, 409 (``job`` as it is), 400."""

    code: int
    job: LeasedJob | None = None
    detail: str = ""
    refusal: ValidationError | None = None


@transaction.atomic
def jobs_report(*, reports: Sequence[Report], by=None, site_ids: Sequence[int] | None = None) -> list[Answer]:
    """Apply a batch of reports, each answered on its own, in one transaction; returns the answers in order.

    A job that does not exist or is not at ``site_ids`` is 404; a lease not held 409 (nothing
    changes); a result the kind refuses 400 (its writes undone, the others kept). A report that
    repeats one already applied (same lease token) is 200 and changes nothing. Each job may appear
    once per batch. The jobs are locked in id order, so concurrent batches cannot deadlock.
    """
    answers: list[Answer | None] = [None] * len(reports)
    seen: set[tuple[str, int]] = set()
    by_kind: dict[str, list[int]] = {}
    for index, report in enumerate(reports):
        if (report.kind, report.pk) in seen:
            answers[index] = Answer(400, refusal=ValidationError({"id": ["This job is reported twice in the batch."]}))
            continue
        seen.add((report.kind, report.pk))
        by_kind.setdefault(report.kind, []).append(index)
    now = timezone.now()
    for handler in job_kinds:
        if handler.kind in by_kind:
            _report_kind(handler, [(i, reports[i]) for i in by_kind[handler.kind]], answers, by, site_ids, now)
    return answers


def _report_kind(handler: JobKindHandler, items: list[tuple[int, Report]], answers: list, by,
                 site_ids: Sequence[int] | None, now: datetime) -> None:
    jobs = _lock(handler, [report.pk for _, report in items], site_ids)
    before = _snapshot(list(jobs.values())) if jobs else {}
    to_complete: list[tuple[int, Report, LeasedJob]] = []
    for index, report in items:
        job = jobs.get(report.pk)
        if job is None:
            answers[index] = Answer(404, detail="No such job at this worker's sites.")
        elif report.action == FAIL:
            answers[index] = _fail_one(job, report, by)
        elif job.is_done and report.lease_token and job.lease_token == report.lease_token:
            answers[index] = Answer(200, job)  # a repeat of the report that completed it
        elif not job.lease_is_held(report.lease_token, now):
            answers[index] = Answer(409, job, detail=str(LeaseConflict(job)))
        else:
            to_complete.append((index, report, job))
    refused = handler.apply_results([(job, report.result) for _, report, job in to_complete]) if to_complete else {}
    done = []
    for index, report, job in to_complete:
        if job.pk in refused:
            answers[index] = Answer(400, job, refusal=refused[job.pk])
        else:
            answers[index] = Answer(200, job)
            done.append((report, job))
    if done:
        _complete_in_bulk(done, before, by, now)


_LOCKS: dict[tuple, PreparedQuery] = {}


def _lock(handler: JobKindHandler, pks: list[int], site_ids: Sequence[int] | None) -> dict[int, LeasedJob]:
    """The jobs with what ``apply_results`` needs, row-locked (only the job rows), in id order.

    Its SQL is made once per kind, number of jobs and server thread (``opsdb.prepared``).
    """
    key = (type(handler), site_ids is not None)
    if key not in _LOCKS:
        def build(ids: list[int], *sites: list[int]) -> QuerySet:
            queryset = handler.model.objects.filter(pk__in=ids).select_related(*handler.result_related)
            if sites:
                queryset = handler.at_sites(queryset, sites[0])
            if connection.features.has_select_for_update:
                queryset = queryset.select_for_update(of=("self",))
            return queryset.order_by("pk")
        _LOCKS[key] = PreparedQuery(build)
    jobs = _LOCKS[key](sorted(set(pks)), *([list(site_ids)] if site_ids is not None else []))
    return {job.pk: job for job in jobs}


def _fail_one(job: LeasedJob, report: Report, by) -> Answer:
    """A failure report, as ``job_fail`` (its kind's hooks run per job), in a savepoint of its own."""
    try:
        with transaction.atomic():
            job, _changed = _fail(job=job, lease_token=report.lease_token, error=report.error,
                                  log_path=report.log_path, retryable=report.retryable, by=by,
                                  source_corrupt=report.source_corrupt)
    except LeaseConflict as exc:
        return Answer(409, exc.job, detail=str(exc))
    except ValidationError as exc:
        return Answer(400, job, refusal=exc)
    return Answer(200, job)


def _complete_in_bulk(done: list[tuple[Report, LeasedJob]], before: dict[int, dict[str, Any]], by,
                      now: datetime) -> None:
    """ACTIVE → done for each job: the transitions, one UPDATE, one state-log insert, one job-log insert."""
    jobs = [job for _, job in done]
    with state_logs_in_bulk():
        for report, job in done:
            job.complete(log_path=report.log_path, by=by, description=f"completed by {job.lease_holder}")
            job.finished_at = now  # the batch's time, one value for all
        save_in_bulk(jobs, before, source=JobStatus.ACTIVE, now=now)
    content_type = ContentType.objects.get_for_model(type(jobs[0]))
    insert_rows([
        DataTransferLog(content_type=content_type, object_id=job.pk,
                        message=short_log_message(f"{job.KIND} completed by {job.lease_holder}"),
                        log_path=report.log_path, worker=job.lease_holder, attempt=job.attempts_total + 1,
                        created_at=now)
        for report, job in done
    ])
