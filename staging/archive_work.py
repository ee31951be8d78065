"""Handler of the job kind ``archive``: a raw package from a buffer (or processing area) into the site's archive.

(The ``stage`` kind has its own module, ``staging/work.py``.)
"""

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from rest_framework import serializers

from opsdb.api.fields import ChecksumField, RelativePathField
from opsdb.choices import JobKind, JobStatus
from opsdb.models import RawDataPackageCopy
from opsdb.work import JobKindHandler, location_payload, raw_package_path, record_copy
from staging.models import LongTermArchiveTransfer


class ArchiveResult(serializers.Serializer):
    checksum = ChecksumField()
    path = RelativePathField(required=False)


class ArchiveHandler(JobKindHandler):
    """Copy a raw package into the long-term archive and verify it there."""

    kind = JobKind.ARCHIVE
    model = LongTermArchiveTransfer
    result_serializer = ArchiveResult
    result_related = ("raw_package", "destination_location", "repair_of")
    attention_label = "Archive transfers waiting for an operator"
    site_field = "source_location__site"
    size_field = "raw_package__size"
    # After 3 failed attempts an archive transfer requires intervention (DESIGN.md).
    attention_filter = {"status": JobStatus.FAILED, "requires_intervention": True}

    def queryset(self) -> QuerySet:
        # The source copy's own path (a data product registered at a processing area has the path it
        # was given), read in the same query.
        source_path = RawDataPackageCopy.objects.filter(
            raw_package_id=OuterRef("raw_package_id"), location_id=OuterRef("source_location_id")
        ).values("path")[:1]
        return LongTermArchiveTransfer.objects.select_related(
            "raw_package", "source_location__site", "destination_location__site", "repair_of"
        ).annotate(source_path=Subquery(source_path))

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(source_location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(raw_package_id__in=package_ids).select_related("source_location__site")

    def site_of(self, job: LongTermArchiveTransfer):
        return job.source_location.site

    def size_of(self, job: LongTermArchiveTransfer) -> int | None:
        return job.raw_package.size

    def payload(self, job: LongTermArchiveTransfer) -> dict[str, Any]:
        raw = job.raw_package
        path = raw_package_path(raw)
        return {
            "raw_package": {"id": raw.pk, "name": raw.name, "size": raw.size, "checksum": raw.checksum,
                            "checksum_algorithm": raw.checksum_algorithm},
            "source": {"location": location_payload(job.source_location),
                       "path": getattr(job, "source_path", None) or path},
            "destination": {"location": location_payload(job.destination_location),
                            "path": job.repair_of.path if job.repair_of_id else path},
            "method": job.method,
            # A repair replaces a copy an audit found bad: the file there is not to be trusted or kept.
            "repair": bool(job.repair_of_id),
        }

    def apply_result(self, job: LongTermArchiveTransfer, data: dict[str, Any]) -> None:
        raw = job.raw_package
        if data["checksum"] != raw.checksum.lower():
            raise ValidationError({"checksum": f"Does not match the checksum of {raw} ({raw.checksum})."})
        default = job.repair_of.path if job.repair_of_id else raw_package_path(raw)
        record_copy(RawDataPackageCopy, raw_package=raw, location=job.destination_location,
                    path=data.get("path") or default, checksum=data["checksum"])
