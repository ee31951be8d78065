"""The job kinds of the worker protocol (docs/worker-protocol.md).

Each kind registers a handler that says how its jobs are filtered for a claimer, described to a
worker (payload) and completed (``apply_result``, run inside ``opsdb.services.job_complete``).
The API views (``opsdb/api/work.py``) are generic over this registry; a kind's module registers
its handler with ``@register`` and is imported from its app's ``AppConfig.ready()``.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from django.db.models import QuerySet

from opsdb.leases import LeasedJob


class JobKindHandler:
    """Base for one job kind; subclasses set ``kind`` and ``model`` and fill in the hooks."""

    kind: ClassVar[str]
    model: ClassVar[type[LeasedJob]]
    # A DRF serializer for the kind-specific part of the ``complete`` body. When set, the API
    # validates the body with it (400 with field errors) and passes ``validated_data`` to
    # ``apply_result``; when None, ``apply_result`` gets the request's JSON object as it came.
    result_serializer: ClassVar[type | None] = None
    # Relations ``apply_result`` reads on the job (``select_related`` names): the API fetches them
    # with the locked job row in one query rather than one lazy query each.
    result_related: ClassVar[tuple[str, ...]] = ()

    def queryset(self) -> QuerySet:
        """Jobs of this kind with what ``payload`` needs fetched up front.

        Loads a job once it is claimed; the claim itself locks rows of ``model.objects`` narrowed
        by ``at_sites``/``for_methods``/``claimable``, so limits on what may be claimed go there.
        """
        return self.model.objects.all()

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        """Only jobs at these sites (see the protocol page for what 'at' means per kind)."""
        raise NotImplementedError

    def for_methods(self, queryset: QuerySet, methods: Sequence[str]) -> QuerySet:
        return queryset

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Further limits on what may be claimed now (e.g. per-route concurrency)."""
        return queryset

    def claim_guard(self, job: LeasedJob) -> bool:
        """Last check inside the claim transaction, the job row locked; False leaves the job unclaimed.

        For limits that the ``claimable`` filter alone cannot keep under concurrent claims.
        """
        return True

    def site_of(self, job: LeasedJob):
        raise NotImplementedError

    def payload(self, job: LeasedJob) -> dict[str, Any]:
        raise NotImplementedError

    def apply_result(self, job: LeasedJob, data: dict[str, Any]) -> None:
        """Record what the worker reports; raise django ValidationError (field dict) to refuse it."""
        raise NotImplementedError

    def record_progress(self, job: LeasedJob, items_done: Sequence[str]) -> None:
        """Heartbeat ``items_done`` (names of finished items, e.g. staged packages); most kinds ignore it."""

    def on_failed(self, job: LeasedJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """After a failed attempt, in its transaction: reported by the worker (``retryable`` as it said),
        or ``lease_expired`` (nobody reported; the scheduler's bulk expiry passes instances updated in bulk).
        """


REGISTRY: dict[str, JobKindHandler] = {}


def register(handler_class: type[JobKindHandler]) -> type[JobKindHandler]:
    REGISTRY[handler_class.kind] = handler_class()
    return handler_class


def handler_for(kind: str) -> JobKindHandler:
    return REGISTRY[kind]


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
        **handler.payload(job),
    }


def record_copies(copy_model, *, of: str, location, entries) -> None:
    """Record (or refresh) PRESENT copies at ``location``, verified now: one upsert for all of them.

    ``of`` names the copied object's field (``raw_package``, ``transfer_package``); ``entries`` are
    ``(object, path, checksum)``. One ``INSERT … ON CONFLICT DO UPDATE`` on the (object, location)
    unique constraint, rather than a select-then-write per copy.
    """
    from django.utils import timezone

    from opsdb.choices import CopyStatus

    now = timezone.now()
    rows = [copy_model(location=location, path=path, status=CopyStatus.PRESENT, checksum_verified=checksum,
                       verified_at=now, **{of: obj})
            for obj, path, checksum in entries]
    copy_model.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=[of, "location"],
        update_fields=["path", "status", "checksum_verified", "verified_at", "updated_at"],
    )


def record_copy(copy_model, *, location, path: str, checksum: str, **of) -> None:
    """Record (or refresh) the PRESENT copy of one object at ``location``, verified now."""
    [(field, obj)] = of.items()
    record_copies(copy_model, of=field, location=location, entries=[(obj, path, checksum)])
