"""The ``delete`` job kind: remove the files of copies the deletion rule allows (docs/worker-protocol.md).

The handler describes a delete job to a worker and hands the per-copy report to
``custody.services.deletion_job_report``; the claim checks the rule again (``deletion_job_start``).
"""

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from custody.models import DeletionItem, DeletionJob, DeletionOutcome
from custody.services import deletion_job_failed, deletion_job_report, deletion_job_start
from opsdb.choices import JobKind
from opsdb.work import JobKindHandler, location_payload

ITEM_KINDS = {"raw_package_copy": "raw_package", "transfer_package_copy": "transfer_package",
              "file_copy": "file"}


class DeletedCopyResult(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, help_text="The copy's id in the job (``copies[].id``).")
    outcome = serializers.ChoiceField(
        choices=["deleted", "gone", "failed"],
        help_text="deleted: the worker removed the file; gone: there was no file (counted as deleted); "
                  "failed: it could not be removed (give the error).")
    error = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class DeleteResult(serializers.Serializer):
    """``complete`` of a delete job: the outcome for every copy of the job, once each."""

    copies = DeletedCopyResult(many=True, allow_empty=False)


class DeleteHandler(JobKindHandler):
    """Delete jobs are at their location's site."""

    kind = JobKind.DELETE
    model = DeletionJob
    result_serializer = DeleteResult
    result_related = ("location__site",)
    attention_label = "Delete jobs waiting for an operator (their copies are DELETION_FAILED)"
    site_field = "location__site"
    size_field = "size"

    def queryset(self) -> QuerySet:
        return DeletionJob.objects.select_related("location__site")

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(location__site_id__in=site_ids)

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Not at a location whose deletion an operator switched off or that paused itself."""
        return queryset.filter(location__deletion_enabled=True, location__deletion_paused_reason="")

    def claim_guard(self, job: DeletionJob) -> bool:
        return deletion_job_start(job)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        """Delete jobs with a copy of these packages still waiting in them."""
        return queryset.filter(items__raw_package_copy__raw_package_id__in=package_ids,
                               items__outcome=DeletionOutcome.WAITING).distinct().select_related("location__site")

    def site_of(self, job: DeletionJob):
        return job.location.site

    def size_of(self, job: DeletionJob) -> int | None:
        return job.size

    def payload(self, job: DeletionJob) -> dict[str, Any]:
        items = DeletionItem.objects.filter(job=job, outcome=DeletionOutcome.WAITING).order_by("pk")
        return {
            "location": location_payload(job.location),
            "reason": job.reason,
            "copies": [
                {"id": item.pk, "kind": next(v for k, v in ITEM_KINDS.items() if getattr(item, f"{k}_id")),
                 "path": item.path, "size": item.size}
                for item in items
            ],
        }

    def apply_result(self, job: DeletionJob, data: dict[str, Any]) -> None:
        deletion_job_report(job=job, results=data["copies"], worker=job.lease_holder)

    def on_failed(self, job: DeletionJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
        deletion_job_failed(job, lease_expired=lease_expired)
