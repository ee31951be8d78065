"""The ``stage`` job kind: bring archived raw packages to a processing location (docs/worker-protocol.md)."""

from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from opsdb.choices import CopyStatus, JobKind, LocationType
from opsdb.models import DataLocation, RawDataFile, RawDataFileCopy, RawDataPackageCopy
from opsdb.work import JobKindHandler, register
from staging.api.serializers import StageResultSerializer
from staging.choices import StagedPackageState
from staging.models import StagingJob, StagingJobPackage


def location_payload(location: DataLocation) -> dict[str, Any]:
    """The protocol's *location* object."""
    return {
        "id": location.pk, "site": location.site.name, "name": location.name,
        "location_type": location.location_type, "storage_type": location.storage_type,
        "base_path": location.base_path, "host": location.host,
    }


def staged_dir(package_name: str) -> str:
    """Where a package's files are unpacked at a processing location (relative to its base path)."""
    return f"staged/{package_name.removesuffix('.tar')}"


def _safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(path) and not path.startswith("/") and ".." not in parts


@register
class StageHandler(JobKindHandler):
    """Stage jobs are *at* their destination (processing) location's site."""

    kind = JobKind.STAGE
    model = StagingJob
    # The shape of the ``complete`` body (for the API's 400s and schema); apply_result checks the rest.
    result_serializer = StageResultSerializer

    def queryset(self) -> QuerySet:
        archive_copies = RawDataPackageCopy.objects.present().filter(
            location__location_type=LocationType.LONG_TERM_ARCHIVE
        )
        items = (
            StagingJobPackage.objects.exclude(state=StagedPackageState.REUSED)
            .select_related("raw_package", "source_location__site")
            .prefetch_related(
                Prefetch("raw_package__files", queryset=RawDataFile.objects.order_by("relative_path")),
                Prefetch("raw_package__copies", queryset=archive_copies, to_attr="archive_copies"),
            )
            .order_by("raw_package__name")
        )
        return StagingJob.objects.select_related("owner", "destination_location__site").prefetch_related(
            Prefetch("items", queryset=items, to_attr="items_to_stage")
        )

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(destination_location__site_id__in=site_ids)

    def site_of(self, job: StagingJob):
        return job.destination_location.site

    def _items(self, job: StagingJob) -> list[StagingJobPackage]:
        if hasattr(job, "items_to_stage"):
            return job.items_to_stage
        fresh = self.queryset().get(pk=job.pk)
        job.items_to_stage = fresh.items_to_stage
        return job.items_to_stage

    def payload(self, job: StagingJob) -> dict[str, Any]:
        return {
            "staging_job": {"id": job.pk, "owner": job.owner.get_username()},
            "destination": {"location": location_payload(job.destination_location)},
            "packages": [self._package_payload(item) for item in self._items(job)],
        }

    def _package_payload(self, item: StagingJobPackage) -> dict[str, Any]:
        package = item.raw_package
        source_path = next(
            (c.path for c in package.archive_copies if c.location_id == item.source_location_id),
            f"raw/{package.name}",
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
        """Record one file access record per staged file; mark packages STAGED; the job lives ``lifetime``."""
        from staging.services import extend_file_expiry, notify_on_commit

        items = self._items(job)
        reports = self._validated_reports(items, data)
        now = timezone.now()
        expires_at = now + job.lifetime
        self._record_copies(job, items, reports, now, expires_at)
        for item in items:
            item.state, item.bytes_staged, item.staged_at, item.error = (
                StagedPackageState.STAGED, item.raw_package.size, item.staged_at or now, ""
            )
        StagingJobPackage.objects.bulk_update(items, ["state", "bytes_staged", "staged_at", "error"])
        job.expires_at = expires_at
        extend_file_expiry(job=job, until=expires_at)
        notify_on_commit(job)

    def _validated_reports(self, items: list[StagingJobPackage], data: dict[str, Any]) -> dict[str, dict]:
        """Reported files by package name and relative path; ValidationError unless complete and matching."""
        packages = data.get("packages") if isinstance(data, dict) else None
        if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
            raise ValidationError({"packages": ["A list of staged packages is required."]})
        reported: dict[str, dict[str, dict]] = {}
        for entry in packages:
            files = entry.get("files")
            if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
                raise ValidationError({"packages": [f"Package {entry.get('name')!r}: a list of files is required."]})
            reported[str(entry.get("name"))] = {str(f.get("relative_path")): f for f in files}
        expected = {item.raw_package.name: item for item in items}
        errors = [f"Not a package of this job: {name}." for name in sorted(set(reported) - set(expected))]
        for name, item in expected.items():
            errors.extend(self._package_errors(item, reported.get(name)))
        if errors:
            raise ValidationError({"packages": errors})
        return reported

    def _package_errors(self, item: StagingJobPackage, files: dict[str, dict] | None) -> list[str]:
        name = item.raw_package.name
        if files is None:
            return [f"Package {name} is missing from the report."]
        errors = []
        for raw_file in item.raw_package.files.all():
            report = files.get(raw_file.relative_path)
            if report is None:
                errors.append(f"Package {name}: file {raw_file.relative_path} is missing.")
            elif str(report.get("checksum", "")).lower() != raw_file.checksum.lower():
                errors.append(f"Package {name}: checksum mismatch for {raw_file.relative_path}.")
            elif "path" in report and not _safe_relative(str(report["path"])):
                errors.append(f"Package {name}: path of {raw_file.relative_path} must be relative to the "
                              "location's base path.")
        return errors

    def _record_copies(self, job: StagingJob, items: list[StagingJobPackage], reports: dict[str, dict],
                       now: datetime, expires_at: datetime) -> None:
        copies = []
        for item in items:
            files = reports[item.raw_package.name]
            for raw_file in item.raw_package.files.all():
                report = files[raw_file.relative_path]
                path = str(report.get("path") or f"{staged_dir(item.raw_package.name)}/{raw_file.relative_path}")
                copies.append(RawDataFileCopy(
                    raw_file=raw_file, location_id=job.destination_location_id, status=CopyStatus.PRESENT,
                    path=path, checksum_verified=raw_file.checksum, verified_at=now, expires_at=expires_at,
                    created_at=now, updated_at=now,
                ))
        # A file staged here before (expired, cleaned up) gets its record back rather than a duplicate.
        RawDataFileCopy.objects.bulk_create(
            copies, update_conflicts=True, unique_fields=["raw_file", "location"],
            update_fields=["status", "path", "checksum_verified", "verified_at", "expires_at", "updated_at"],
        )

    def record_progress(self, job: StagingJob, items_done: Sequence[str]) -> None:
        """Heartbeat ``items_done``: mark those packages STAGED now (see ``staging_items_mark_staged``)."""
        from staging.services import staging_items_mark_staged

        staging_items_mark_staged(job=job, names=items_done)

    def on_failed(self, job: StagingJob, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """Call after a failed attempt (``job_fail``, ``job_expire``, the scheduler's bulk expiry).

        The owner is emailed when the transaction commits if the job is FAILED then (the status is
        read afresh, so an instance updated in bulk is fine); back to PENDING sends nothing.
        """
        from staging.services import notify_on_commit

        notify_on_commit(job)
