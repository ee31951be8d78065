"""The ``stage`` job kind: bring archived raw packages to a processing location (docs/worker-protocol.md).

The handler describes a staging job to a worker and hands the worker's report to
``staging.services.staging_job_record_staged``, which holds the rules.
"""

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from opsdb.api.fields import RelativePathField
from opsdb.choices import JobKind
from opsdb.roles import is_operator, is_worker
from opsdb.work import JobKindHandler, location_payload, raw_package_path
from staging.models import StagingJob, StagingJobPackage
from staging.selectors import items_to_stage, items_to_stage_prefetch, staged_dir
from staging.services import notify_on_commit, staging_items_mark_staged, staging_job_record_staged


class StagedFileResult(serializers.Serializer):
    relative_path = serializers.CharField(max_length=1024)
    path = RelativePathField(required=False,
                             help_text="Relative to the location's base path; default staged/<package>/<file>.")
    checksum = serializers.CharField(max_length=128)


class StagedPackageResult(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    files = StagedFileResult(many=True)


class StageResult(serializers.Serializer):
    """``complete`` of a stage job: every staged package with every file and its verified checksum."""

    packages = StagedPackageResult(many=True)


class StageHandler(JobKindHandler):
    """Stage jobs are *at* their destination (processing) location's site."""

    kind = JobKind.STAGE
    model = StagingJob
    # The shape of the ``complete`` body (for the API's 400s and schema); the service checks the rest.
    result_serializer = StageResult
    attention_label = "Failed staging jobs"
    site_field = "destination_location__site"

    def queryset(self) -> QuerySet:
        return StagingJob.objects.select_related("owner", "destination_location__site").prefetch_related(
            items_to_stage_prefetch()
        )

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(destination_location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(items__raw_package_id__in=package_ids).distinct().select_related(
            "destination_location__site")

    def visible_to(self, queryset: QuerySet, user) -> QuerySet:
        """A scientist sees their own requests, nobody else's."""
        return queryset if is_operator(user) or is_worker(user) else queryset.filter(owner=user)

    def site_of(self, job: StagingJob):
        return job.destination_location.site

    def payload(self, job: StagingJob) -> dict[str, Any]:
        return {
            "staging_job": {"id": job.pk, "owner": job.owner.get_username()},
            "destination": {"location": location_payload(job.destination_location)},
            "packages": [self._package_payload(item) for item in items_to_stage(job)],
        }

    def _package_payload(self, item: StagingJobPackage) -> dict[str, Any]:
        package = item.raw_package
        source_path = next(
            (c.path for c in package.archive_copies if c.location_id == item.source_location_id),
            raw_package_path(package),
        )
        return {
            "raw_package_id": package.pk, "name": package.name, "size": package.size,
            "checksum": package.checksum, "checksum_algorithm": package.checksum_algorithm,
            "source": {"location": location_payload(item.source_location) if item.source_location else None,
                       "path": source_path},
            "destination_path": staged_dir(package.name),
            "files": [
                {"id": f.pk, "relative_path": f.relative_path, "size": f.size, "checksum": f.checksum,
                 "checksum_algorithm": f.checksum_algorithm}
                for f in package.files.all()
            ],
        }

    def apply_result(self, job: StagingJob, data: dict[str, Any]) -> None:
        staging_job_record_staged(job=job, packages=data.get("packages") if isinstance(data, dict) else None)

    def record_progress(self, job: StagingJob, items_done: Sequence[str]) -> None:
        """Heartbeat ``items_done``: mark those packages STAGED now (see ``staging_items_mark_staged``)."""
        staging_items_mark_staged(job=job, names=items_done)

    def on_failed(self, job: StagingJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """The owner is emailed when the transaction commits if the job is FAILED then.

        The status is read afresh, so an instance updated in bulk is fine; back to PENDING sends nothing.
        """
        notify_on_commit(job)
