"""Planning passes for archive and retrieval inside a site: archive transfers and staging cleanup.

- Archiving: a raw package PRESENT at a BUFFER location — or at a PROCESSING location: data
  products registered there come home — of a site with an active LONG_TERM_ARCHIVE
  location gets one LongTermArchiveTransfer to that site's archive of highest priority — unless it
  already has an archive transfer (any state, any archive of that site: an operator's cancel is
  respected) or is already PRESENT in an archive of that site (e.g. a CUSTOM route delivered its
  bundle straight into the archive, where it was unpacked). Unique constraint
  ``archive_once_per_package_and_archive`` backs the "once".
- Staging cleanup: a READY staging job whose ``expires_at`` passed gives up its file access
  records (RawDataFileCopy at its processing location → DELETION_SCHEDULED) unless another live
  staging job (pending, active, failed-awaiting-retry, or ready and not expired) at the same
  location uses the same package; then ``cleaned_at`` is set. The deletion pass hands the
  scheduled records to ``delete`` jobs, whose workers remove the files (docs/custody.md).
"""

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.copies import copies_transition
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from opsdb.planning import Locations, PassResult, insert_from_select, plural
from staging.models import ARCHIVE_SOURCE_TYPES, LongTermArchiveTransfer, StagingJob, StagingJobPackage


def plan_archive_transfers(*, now: datetime) -> PassResult:
    """An archive transfer for every raw package in a buffer (or processing area) of a site with a long-term archive.

    One INSERT … SELECT: the candidates never travel to Python (a site receiving a year of data
    gets a million archive transfers in one statement).
    """
    result = PassResult("archiving")
    topology = Locations.load()
    archives = {}
    for loc in topology.locations.values():
        archive = topology.best_location(loc.site_id, LocationType.LONG_TERM_ARCHIVE)
        if archive is not None:
            archives[loc.site_id] = archive.id
    if not archives:
        return result
    buffers = [loc.id for loc in topology.locations.values()
               if loc.site_id in archives and loc.location_type in ARCHIVE_SOURCE_TYPES]
    if not buffers:
        return result
    from_sql, params = _unarchived_buffer_copies_sql(archives, buffers)
    result.count = insert_from_select(
        LongTermArchiveTransfer,
        {"raw_package_id": "c.raw_package_id", "source_location_id": "MIN(c.location_id)",
         "destination_location_id": "MIN(a.archive_id)"},
        from_sql, params, now=now,
    )
    if result.count:
        made = (
            LongTermArchiveTransfer.objects.filter(created_at=now)
            .values_list("source_location_id", "destination_location_id").annotate(n=Count("pk"))
        )
        result.say(f"{plural(result.count, 'archive transfer')}: " + ", ".join(
            f"{topology.label(s)} → {topology.label(d)} ×{n}" for s, d, n in made
        ))
    _mark_archive_planned(buffers)
    return result


def _mark_archive_planned(buffers: list[int]) -> int:
    """Flag the buffer copies whose package now has an archive transfer or archived copy at their site.

    Only copies not flagged yet are read (a partial index), so later passes skip them for good.
    """
    transfers = LongTermArchiveTransfer.objects.filter(
        raw_package_id=OuterRef("raw_package_id"), destination_location__site_id=OuterRef("location__site_id")
    )
    archived = RawDataPackageCopy.objects.filter(
        raw_package_id=OuterRef("raw_package_id"), status=CopyStatus.PRESENT,
        location__site_id=OuterRef("location__site_id"), location__location_type=LocationType.LONG_TERM_ARCHIVE,
    )
    return (
        RawDataPackageCopy.objects.filter(location_id__in=buffers, status=CopyStatus.PRESENT, archive_planned=False)
        .filter(Exists(transfers) | Exists(archived))
        .update(archive_planned=True)
    )


def _unarchived_buffer_copies_sql(archives: dict[int, int], buffers: list[int]) -> tuple[str, list]:
    """FROM … of buffer (and processing) copies with no archive transfer and no archived copy at their site.

    A package in two buffers of one site (or a buffer and a processing area) is archived once
    (grouped by package and site). Copies flagged ``archive_planned`` are known to have one and are
    not read (a partial index).
    """
    copy = RawDataPackageCopy._meta.db_table
    location = DataLocation._meta.db_table
    archive_job = LongTermArchiveTransfer._meta.db_table
    pairs = " UNION ALL ".join(["SELECT %s AS site_id, %s AS archive_id"] * len(archives))
    sql = f"""
        FROM {copy} c
        JOIN {location} l ON l.id = c.location_id
        JOIN ({pairs}) a ON a.site_id = l.site_id
        WHERE c.status = %s AND l.location_type IN (%s, %s) AND NOT c.archive_planned
          AND c.location_id IN ({", ".join(["%s"] * len(buffers))})
          AND NOT EXISTS (
            SELECT 1 FROM {archive_job} t JOIN {location} tl ON tl.id = t.destination_location_id
            WHERE t.raw_package_id = c.raw_package_id AND tl.site_id = l.site_id)
          AND NOT EXISTS (
            SELECT 1 FROM {copy} ac JOIN {location} al ON al.id = ac.location_id
            WHERE ac.raw_package_id = c.raw_package_id AND ac.status = %s AND al.site_id = l.site_id
              AND al.location_type = %s)
        GROUP BY c.raw_package_id, l.site_id"""
    params = [v for pair in archives.items() for v in pair]
    params += [CopyStatus.PRESENT, *ARCHIVE_SOURCE_TYPES, *buffers, CopyStatus.PRESENT,
               LocationType.LONG_TERM_ARCHIVE]
    return sql, params


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
    deleted = copies_transition(records.exclude(Exists(still_used)), "schedule_deletion", now=now,
                                description="its staging job expired: the files are deleted")
    StagingJob.objects.filter(pk__in=job_ids).update(cleaned_at=now)
    result.count = len(job_ids)
    result.say(
        f"{plural(len(job_ids), 'expired staging job')} cleaned ({', '.join(f'#{pk}' for pk in job_ids[:10])}"
        f"{'…' if len(job_ids) > 10 else ''}): {plural(deleted, 'file access record')} scheduled for deletion, "
        f"{kept} kept for live jobs"
    )
    return result
