"""The contract of a job kind of the worker protocol (docs/worker-protocol.md, docs/adding-a-job-kind.md).

A kind is one ``JobKindHandler`` subclass in its app (``transfers/work.py``, ``staging/work.py``, …)
and one line in ``settings.JOB_KINDS``, which lists the handlers in claim-priority order. The
registry (``opsdb.registry.job_kinds``) is built from that list once, at start-up; everything that
loops over kinds (claim, the API's site filters and log filter, the admin's attention panel, lease
recovery) reads it. A handler adapts: it filters jobs for a claimer, describes a job to a worker
and turns the worker's report into a call of its app's service; the business rules stay in the
services.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus
from opsdb.copies import restore_logs
from opsdb.explanation import Explanation
from opsdb.leases import LeasedJob
from opsdb.prepared import PreparedQuery, insert_rows


class JobKindHandler(ABC):
    """One job kind: every hook the machinery calls, the abstract ones to be written for each kind.

    Class attributes: ``kind`` (a ``JobKind`` value, the URL segment ``/api/v1/work/<kind>/``),
    ``model`` (the concrete ``LeasedJob`` model whose ``KIND`` is ``kind``), ``attention_label``, and
    ``site_field`` (the relation to the site the job is at, as ``site_of`` follows it), and
    optionally ``size_field``, ``result_serializer``, ``result_related`` and ``attention_filter``.
    """

    kind: ClassVar[str]
    model: ClassVar[type[LeasedJob]]
    # A DRF serializer for the kind-specific part of the ``complete`` body. When set, the API
    # validates the body with it (400 with field errors) and passes ``validated_data`` to
    # ``apply_result``; when None, ``apply_result`` gets the request's JSON object as it came.
    result_serializer: ClassVar[type | None] = None
    # Relations ``apply_result`` reads on the job (``select_related`` names): the API fetches them
    # with the locked job row in one query rather than one lazy query each.
    result_related: ClassVar[tuple[str, ...]] = ()
    # The admin's "needs attention" panel: the label of this kind's jobs that wait for an operator,
    # and the model filter that finds them (also the admin list's filter the panel links to).
    attention_label: ClassVar[str] = ""
    attention_filter: ClassVar[dict[str, Any]] = {"status": JobStatus.FAILED}
    # Lookups from the job to its site (e.g. ``origin_location__site``) and to the bytes it moves
    # (``size_of`` in one query for a list: "resumed at 37.2 TB of 50.0 TB"); empty: not known.
    site_field: ClassVar[str] = ""
    size_field: ClassVar[str] = ""

    # -- which jobs a claimer may get -----------------------------------------------------------
    @abstractmethod
    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        """Only jobs at these sites (see the protocol page for what 'at' means per kind)."""

    def for_methods(self, queryset: QuerySet, methods: Sequence[str]) -> QuerySet:
        """Only jobs a worker that can do these transfer methods can do; most kinds have no method."""
        return queryset

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Further limits on what may be claimed now (e.g. per-route concurrency)."""
        return queryset

    def claim_guard(self, job: LeasedJob) -> bool:
        """Last check inside the claim transaction, the job row locked; False leaves the job unclaimed.

        For limits that the ``claimable`` filter alone cannot keep under concurrent claims.
        """
        return True

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        """Only jobs that read or write these raw packages ("where is my data": the work pending on them).

        A kind whose jobs never touch a raw package keeps this default.
        """
        return queryset.none()

    def visible_to(self, queryset: QuerySet, user) -> QuerySet:
        """Only the jobs ``user`` may read, besides model permissions and site restrictions (e.g. their own)."""
        return queryset

    # -- what a worker is told ----------------------------------------------------------------------
    def queryset(self) -> QuerySet:
        """Jobs of this kind with what ``payload`` needs fetched up front.

        Loads a job once it is claimed; the claim itself locks rows of ``model.objects`` narrowed
        by ``at_sites``/``for_methods``/``claimable``, so limits on what may be claimed go there.
        """
        return self.model.objects.all()

    @abstractmethod
    def site_of(self, job: LeasedJob):
        """The site the job is at (the ``site`` of the claimed job)."""

    @abstractmethod
    def payload(self, job: LeasedJob) -> dict[str, Any]:
        """The kind's own fields of a claimed job: everything a worker needs to do it."""

    # -- what a worker reports ----------------------------------------------------------------------
    @abstractmethod
    def apply_result(self, job: LeasedJob, data: dict[str, Any]) -> None:
        """Record what the worker reports; raise django ValidationError (field dict) to refuse it.

        Runs inside ``opsdb.services.job_complete``, the job row locked, before ACTIVE → done.
        """

    def apply_results(self, results: Sequence[tuple[LeasedJob, dict[str, Any]]]) -> dict[int, ValidationError]:
        """``apply_result`` for the jobs of a batch report; returns the refused ones: job id → ValidationError.

        Runs inside ``opsdb.batches.jobs_report``, the jobs locked. A refused job must leave nothing
        behind while the others' results stand. The default applies one job at a time, each in a
        savepoint; a kind with many small jobs overrides it with set-based writes.
        """
        refused = {}
        for job, data in results:
            try:
                with transaction.atomic():
                    self.apply_result(job, data)
            except ValidationError as exc:
                refused[job.pk] = exc
            except IntegrityError as exc:  # a database constraint refused this job's result
                refused[job.pk] = ValidationError(str(exc).splitlines()[0])
        return refused

    @property
    def guards_claims(self) -> bool:
        """Whether the kind checks each claim under the job's lock (``claim_guard``): batches claim it one by one."""
        return type(self).claim_guard is not JobKindHandler.claim_guard

    def size_of(self, job: LeasedJob) -> int | None:
        """Bytes the job moves in all (for "resumed at 37.2 TB of 50.0 TB"); None when not known."""
        return None

    def explain(self, jobs: Sequence[LeasedJob], now: datetime) -> dict[int, Explanation]:
        """Explanations only this kind can give (a paused route, a relay hop), by job id.

        ``jobs`` are of any status; the ones left out get the shared explanations of
        ``opsdb.explain`` (done, needs an operator, running, backoff, waiting for a worker). A
        fixed number of queries for the whole list, never one per job.
        """
        return {}

    def record_progress(self, job: LeasedJob, items_done: Sequence[str]) -> None:
        """Heartbeat ``items_done`` (names of finished items, e.g. staged packages); most kinds ignore it."""
        return  # optional hook: nothing to record by default

    #: The kind's worker reads a stored copy that it may report corrupt (``fail`` with ``source_corrupt``).
    reads_source_copy = False

    def source_copy(self, job: LeasedJob) -> Any:
        """The copy record the job reads (``reads_source_copy`` kinds), or None when none is recorded.

        A worker's ``source_corrupt`` report takes it out of service (MISMATCH); the kind's claim
        filter then holds the job until the copy is PRESENT again.
        """
        return  # kinds that read no stored copy

    def on_failed(self, job: LeasedJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """After a failed attempt (reported, or a lease that ran out, one job or in bulk), in its transaction.

        ``retryable``: what the worker reported; ``lease_expired``: nobody reported, the lease ran out
        (the scheduler's bulk expiry passes instances updated in bulk).

        ``job`` is back to PENDING or FAILED; e.g. staging emails the owner of a FAILED request.
        ``retryable`` False: the worker said another attempt cannot succeed (the job's input is at fault).
        """
        return  # optional hook: nothing to do by default


def location_payload(location) -> dict[str, Any]:
    """A location as the protocol page gives it; ``location.site`` should be fetched up front."""
    return {
        "id": location.pk, "site": location.site.name, "name": location.name,
        "location_type": location.location_type, "storage_type": location.storage_type,
        "base_path": location.base_path, "host": location.host,
    }


def raw_package_path(raw_package) -> str:
    """Where a raw data package's archive lives, relative to a location's base path."""
    return f"raw/{raw_package.name}"


def job_payload(handler: JobKindHandler, job: LeasedJob) -> dict[str, Any]:
    """The fields every claimed job carries, then the kind's own."""
    return {
        "kind": handler.kind, "id": job.pk, "lease_token": job.lease_token,
        "lease_expires_at": job.lease_expires_at, "attempt": job.attempts + 1,
        "max_attempts": job.max_attempts(), "site": handler.site_of(job).name,
        "resume_bytes": job.resume_bytes or 0,
        **handler.payload(job),
    }


def record_copies(copy_model, *, of: str, location, entries) -> None:
    """Record (or refresh) PRESENT copies at ``location``, verified now: one upsert for all of them.

    ``of`` names the copied object's field (``raw_package``, ``transfer_package``); ``entries`` are
    ``(object, path, checksum)``. One read of the copies already recorded there, then one
    ``INSERT … ON CONFLICT DO UPDATE`` on the (object, location) unique constraint. A copy that was
    no longer PRESENT (deleted, scheduled for deletion, found bad by an audit) becomes PRESENT again
    by the ``restore`` transition, logged; one whose file a worker is removing right now is left to
    that deletion (its record ends DELETED, as the file does).
    """
    now = timezone.now()
    entries = list(entries)
    existing = {getattr(copy, f"{of}_id"): (copy.pk, copy.status)
                for copy in _copies_not_present(copy_model, of)(location.pk, [obj.pk for obj, _, _ in entries])}
    rows = [copy_model(location=location, path=path, status=CopyStatus.PRESENT, checksum_verified=checksum,
                       verified_at=now, **{of: obj})
            for obj, path, checksum in entries
            if existing.get(obj.pk, (None, None))[1] != CopyStatus.DELETION_IN_PROGRESS]
    # As bulk_create(update_conflicts=True, ...) writes it, with SQL made once (no ids read back: not needed).
    insert_rows(rows, unique_fields=[of, "location"],
                update_fields=["path", "status", "checksum_verified", "verified_at", "deletion_failures", "updated_at"])
    restore_logs(copy_model, {pk: status for pk, status in existing.values()
                              if status != CopyStatus.DELETION_IN_PROGRESS},
                 description=f"recorded again at {location.base_path}", now=now)


_COPIES_NOT_PRESENT: dict[tuple, PreparedQuery] = {}


def _copies_not_present(copy_model, of: str) -> PreparedQuery:
    """The copies at a location (id) of objects (ids) that are not PRESENT: their id, status and object id."""
    key = (copy_model, of)
    if key not in _COPIES_NOT_PRESENT:
        _COPIES_NOT_PRESENT[key] = PreparedQuery(lambda location_id, ids: copy_model.objects.filter(
            location_id=location_id, **{f"{of}_id__in": ids}).exclude(status=CopyStatus.PRESENT)
            .only("pk", "status", f"{of}_id"))
    return _COPIES_NOT_PRESENT[key]


def record_copy(copy_model, *, location, path: str, checksum: str, **of) -> None:
    """Record (or refresh) the PRESENT copy of one object at ``location``, verified now."""
    [(field, obj)] = of.items()
    record_copies(copy_model, of=field, location=location, entries=[(obj, path, checksum)])
