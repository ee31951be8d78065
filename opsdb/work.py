"""The job kinds of the worker protocol (docs/worker-protocol.md).

Each kind registers a handler that says how its jobs are filtered for a claimer, described to a
worker (payload) and completed (``apply_result``, run inside ``opsdb.services.job_complete``).
The API views are generic over this registry.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from django.db.models import QuerySet

from opsdb.leases import LeasedJob


class JobKindHandler:
    """Base for one job kind; subclasses set ``kind`` and ``model`` and fill in the hooks."""

    kind: ClassVar[str]
    model: ClassVar[type[LeasedJob]]

    def queryset(self) -> QuerySet:
        """Jobs of this kind with what ``payload`` needs fetched up front."""
        return self.model.objects.all()

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        """Only jobs at these sites (see the protocol page for what 'at' means per kind)."""
        raise NotImplementedError

    def for_methods(self, queryset: QuerySet, methods: Sequence[str]) -> QuerySet:
        return queryset

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Further limits on what may be claimed now (e.g. per-route concurrency)."""
        return queryset

    def site_of(self, job: LeasedJob):
        raise NotImplementedError

    def payload(self, job: LeasedJob) -> dict[str, Any]:
        raise NotImplementedError

    def apply_result(self, job: LeasedJob, data: dict[str, Any]) -> None:
        """Record what the worker reports; raise django ValidationError (field dict) to refuse it."""
        raise NotImplementedError


REGISTRY: dict[str, JobKindHandler] = {}


def register(handler_class: type[JobKindHandler]) -> type[JobKindHandler]:
    REGISTRY[handler_class.kind] = handler_class()
    return handler_class


def handler_for(kind: str) -> JobKindHandler:
    return REGISTRY[kind]
