"""Handler of the job kind ``archive``: a raw package from a buffer (or processing area) into the site's archive.

(The ``stage`` kind has its own module, ``staging/work.py``.)
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from rest_framework import serializers

from opsdb.api.fields import ChecksumField, RelativePathField
from opsdb.choices import JobKind, JobStatus
from opsdb.models import RawDataPackageCopy
from opsdb.work import JobKindHandler, location_payload, raw_package_path, record_copies, record_copy
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
        refusal = self._refusal(job, data)
        if refusal is not None:
            raise refusal
        raw = job.raw_package
        record_copy(RawDataPackageCopy, raw_package=raw, location=job.destination_location,
                    path=self._path(job, data), checksum=data["checksum"])

    def apply_results(self, results: Sequence[tuple[LongTermArchiveTransfer, dict[str, Any]]],
                      ) -> dict[int, ValidationError]:
        """The checksums checked in memory, then one copy upsert per archive location for the good ones."""
        refused: dict[int, ValidationError] = {}
        entries: dict[int, dict] = defaultdict(dict)  # location → raw package → copy (one row per pair)
        locations = {}
        for job, data in results:
            refusal = self._refusal(job, data)
            if refusal is not None:
                refused[job.pk] = refusal
                continue
            raw = job.raw_package
            locations[job.destination_location_id] = job.destination_location
            entries[job.destination_location_id][raw.pk] = (raw, self._path(job, data), data["checksum"])
        try:
            with transaction.atomic():
                for location_id, copies in entries.items():
                    record_copies(RawDataPackageCopy, of="raw_package", location=locations[location_id],
                                  entries=copies.values())
        except IntegrityError:  # a constraint refused one of them: find which, one by one
            good = [(job, data) for job, data in results if job.pk not in refused]
            refused |= super().apply_results(good)
        return refused

    @staticmethod
    def _path(job: LongTermArchiveTransfer, data: dict[str, Any]) -> str:
        """Where the copy is: as reported, else the repaired copy's path, else ``raw/<name>``."""
        return data.get("path") or (job.repair_of.path if job.repair_of_id else raw_package_path(job.raw_package))

    @staticmethod
    def _refusal(job: LongTermArchiveTransfer, data: dict[str, Any]) -> ValidationError | None:
        raw = job.raw_package
        if data["checksum"] != raw.checksum.lower():
            return ValidationError({"checksum": f"Does not match the checksum of {raw} ({raw.checksum})."})
        return None
