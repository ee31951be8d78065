"""Planning passes for archive and retrieval inside a site: archive transfers and staging cleanup.

- Archiving: a raw package PRESENT at a BUFFER location of a site with an active LONG_TERM_ARCHIVE
  location gets one LongTermArchiveTransfer to that site's archive of highest priority — unless it
  already has an archive transfer (any state, any archive of that site: an operator's cancel is
  respected) or is already PRESENT in an archive of that site (e.g. a CUSTOM route delivered its
  bundle straight into the archive, where it was unpacked). Unique constraint
  ``archive_once_per_package_and_archive`` backs the "once".
- Staging cleanup: a READY staging job whose ``expires_at`` passed gives up its file access
  records (RawDataFileCopy at its processing location → DELETED) unless another live staging job
  (pending, active, failed-awaiting-retry, or ready and not expired) at the same location uses
  the same package; then ``cleaned_at`` is set. ops-db never touches the files themselves: a
  DELETED record means the files under ``staged/<package>/`` may be removed by the site's
  housekeeping (see docs/scheduler.md).
"""

from datetime import datetime

from django.db.models import Exists, OuterRef, Q

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import RawDataFileCopy, RawDataPackageCopy
from opsdb.planning import PassResult, counted
from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage
from transfers.planning import Topology


def plan_archive_transfers(*, now: datetime) -> PassResult:
    """An archive transfer for every raw package in a buffer of a site that has a long-term archive."""
    result = PassResult("archiving")
    topology = Topology.load()
    archives = {}
    for loc in topology.locations.values():
        archive = topology.best_location(loc.site_id, LocationType.LONG_TERM_ARCHIVE)
        if archive is not None:
            archives[loc.site_id] = archive
    if not archives:
        return result
    rows = _unarchived_buffer_copies(list(archives))
    jobs, seen = [], set()
    for raw_id, source_id, site_id in rows:
        if (raw_id, site_id) not in seen:  # a package in two buffers of a site is archived once
            seen.add((raw_id, site_id))
            jobs.append(LongTermArchiveTransfer(
                raw_package_id=raw_id, source_location_id=source_id,
                destination_location_id=archives[site_id].id, created_at=now,
            ))
    if jobs:
        LongTermArchiveTransfer.objects.bulk_create(jobs, ignore_conflicts=True)
        result.say(f"{len(jobs)} archive transfers: " + counted(
            f"{topology.label(j.source_location_id)} → {topology.label(j.destination_location_id)}" for j in jobs
        ))
    result.count = len(jobs)
    return result


def _unarchived_buffer_copies(site_ids: list[int]):
    """(raw package, buffer location, site) of buffer copies with no archive transfer or archived copy."""
    same_site = {"location__site_id": OuterRef("location__site_id")}
    transfer_exists = LongTermArchiveTransfer.objects.filter(
        raw_package_id=OuterRef("raw_package_id"), destination_location__site_id=OuterRef("location__site_id"),
    )
    archived = RawDataPackageCopy.objects.filter(
        raw_package_id=OuterRef("raw_package_id"), status=CopyStatus.PRESENT,
        location__location_type=LocationType.LONG_TERM_ARCHIVE, **same_site,
    )
    return (
        RawDataPackageCopy.objects.filter(
            status=CopyStatus.PRESENT, location__location_type=LocationType.BUFFER, location__site_id__in=site_ids,
        )
        .exclude(Exists(transfer_exists))
        .exclude(Exists(archived))
        .order_by("raw_package_id", "location_id")
        .values_list("raw_package_id", "location_id", "location__site_id")
        .iterator(chunk_size=20000)
    )


def live_staging_jobs(now: datetime):
    """Staging jobs whose staged data must stay: open, or ready and not yet expired."""
    return StagingJob.objects.filter(
        Q(status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED))
        | Q(status=JobStatus.READY, expires_at__isnull=True)
        | Q(status=JobStatus.READY, expires_at__gt=now)
    )


def clean_expired_staging(*, now: datetime) -> PassResult:
    """Withdraw the file access records of staging jobs whose lifetime ran out (set-based)."""
    result = PassResult("staging cleanup")
    expired = StagingJob.objects.filter(status=JobStatus.READY, expires_at__lte=now, cleaned_at__isnull=True)
    job_ids = list(expired.values_list("pk", flat=True))
    if not job_ids:
        return result
    staged_for_expired = StagingJobPackage.objects.filter(
        job_id__in=job_ids, job__destination_location_id=OuterRef("location_id"),
        raw_package_id=OuterRef("raw_file__package_id"),
    )
    still_used = StagingJobPackage.objects.filter(
        job__in=live_staging_jobs(now).exclude(pk__in=job_ids),
        job__destination_location_id=OuterRef("location_id"), raw_package_id=OuterRef("raw_file__package_id"),
    )
    records = RawDataFileCopy.objects.filter(status=CopyStatus.PRESENT).filter(Exists(staged_for_expired))
    kept = records.filter(Exists(still_used)).count()
    deleted = records.exclude(Exists(still_used)).update(status=CopyStatus.DELETED, updated_at=now)
    StagingJob.objects.filter(pk__in=job_ids).update(cleaned_at=now)
    result.count = len(job_ids)
    result.say(
        f"{len(job_ids)} expired staging jobs cleaned ({', '.join(f'#{pk}' for pk in job_ids[:10])}"
        f"{'…' if len(job_ids) > 10 else ''}): {deleted} file access records marked DELETED, "
        f"{kept} kept for live jobs"
    )
    return result
