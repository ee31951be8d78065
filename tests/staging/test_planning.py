"""Archive-transfer planning and staging cleanup."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import RawDataFileCopy
from opsdb.services import job_cancel
from staging.models import LongTermArchiveTransfer, StagingJob
from staging.planning import clean_expired_staging, plan_archive_transfers
from tests import factories as f
from tests.topology import finish, site, waiting

pytestmark = pytest.mark.django_db


@pytest.fixture
def cologne():
    return site("cologne", processing=True)


# --- archiving ------------------------------------------------------------------------------------


def test_archive_transfer_once_for_a_package_in_a_buffer(cologne):
    raw = waiting(cologne.buffer)

    counts = [plan_archive_transfers(now=timezone.now()).count for _ in range(2)]

    job = LongTermArchiveTransfer.objects.get()
    assert counts == [1, 0]
    assert (job.raw_package, job.source_location, job.destination_location, job.status) == (
        raw, cologne.buffer, cologne.archive, JobStatus.PENDING)


def test_archive_goes_to_the_best_active_archive(cologne):
    best = f.DataLocationFactory(site=cologne.site, name="tape", location_type=LocationType.LONG_TERM_ARCHIVE,
                                 priority=5)
    f.DataLocationFactory(site=cologne.site, name="tape-off", location_type=LocationType.LONG_TERM_ARCHIVE,
                          priority=9, active=False)
    waiting(cologne.buffer)

    plan_archive_transfers(now=timezone.now())

    assert LongTermArchiveTransfer.objects.get().destination_location == best


def test_archive_nothing_at_a_site_without_archive():
    ccat = site("ccat", archive=False)
    waiting(ccat.buffer)

    assert plan_archive_transfers(now=timezone.now()).count == 0


def test_archive_nothing_when_already_in_the_archive(cologne):
    raw = waiting(cologne.buffer)
    f.RawDataPackageCopyFactory(raw_package=raw, location=cologne.archive)

    assert plan_archive_transfers(now=timezone.now()).count == 0


def test_archive_respects_a_cancelled_archive_transfer(cologne):
    waiting(cologne.buffer)
    plan_archive_transfers(now=timezone.now())
    job_cancel(job=LongTermArchiveTransfer.objects.get(), reason="operator")

    assert plan_archive_transfers(now=timezone.now()).count == 0


def test_archive_package_in_two_buffers_archived_once(cologne):
    other = f.DataLocationFactory(site=cologne.site, name="buffer-2", location_type=LocationType.BUFFER)
    raw = waiting(cologne.buffer)
    f.RawDataPackageCopyFactory(raw_package=raw, location=other)

    assert plan_archive_transfers(now=timezone.now()).count == 1


def test_archive_ignores_deleted_and_source_copies(cologne):
    f.RawDataPackageCopyFactory(location=cologne.buffer, status=CopyStatus.DELETED)
    f.RawDataPackageCopyFactory(location=f.DataLocationFactory(site=cologne.site, location_type=LocationType.SOURCE))

    assert plan_archive_transfers(now=timezone.now()).count == 0


def test_archive_brings_data_products_home_from_the_processing_area(cologne):
    product = waiting(cologne.processing)

    counts = [plan_archive_transfers(now=timezone.now()).count for _ in range(2)]

    job = LongTermArchiveTransfer.objects.get()
    assert counts == [1, 0]
    assert (job.raw_package, job.source_location, job.destination_location) == (
        product, cologne.processing, cologne.archive)


def test_archive_of_a_product_in_processing_and_buffer_is_made_once(cologne):
    product = waiting(cologne.processing)
    f.RawDataPackageCopyFactory(raw_package=product, location=cologne.buffer)

    assert plan_archive_transfers(now=timezone.now()).count == 1
    assert LongTermArchiveTransfer.objects.get().raw_package == product


def test_archive_skips_a_product_already_archived(cologne):
    product = waiting(cologne.processing)
    f.RawDataPackageCopyFactory(raw_package=product, location=cologne.archive, checksum_verified=product.checksum)

    assert plan_archive_transfers(now=timezone.now()).count == 0


def test_archive_processing_area_without_archive_at_its_site_is_left():
    elsewhere = site("cornell", archive=False, processing=True)
    waiting(elsewhere.processing)

    assert plan_archive_transfers(now=timezone.now()).count == 0


@pytest.mark.parametrize("packages", [1, 3, 10])
def test_archive_query_count_does_not_grow(cologne, packages):
    for _ in range(packages):
        waiting(cologne.buffer)

    with CaptureQueriesContext(connection) as queries:
        result = plan_archive_transfers(now=timezone.now())

    assert result.count == packages
    # the locations · the INSERT … SELECT · the summary of what was made · flagging the copies planned
    # (routes are not read)
    assert len(queries) == 4


# --- staging cleanup ------------------------------------------------------------------------------


def staged(cologne, *, expires_in: timedelta, files: int = 2, raw=None, status="READY"):
    """A staging job at cologne's processing area with file access records for its package."""
    job = f.StagingJobFactory(destination_location=cologne.processing)
    raw = raw or f.RawDataPackageFactory()
    f.StagingJobPackageFactory(job=job, raw_package=raw)
    for _ in range(files if not raw.files.exists() else 0):
        f.RawDataFileCopyFactory(raw_file=f.RawDataFileFactory(package=raw), location=cologne.processing)
    if status == "READY":
        job = finish(job)
    StagingJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() + expires_in)
    return job, raw


def record_states(raw) -> list[str]:
    return sorted(RawDataFileCopy.objects.filter(raw_file__package=raw).values_list("status", flat=True))


def test_cleanup_schedules_expired_records_for_deletion_once(cologne):
    job, raw = staged(cologne, expires_in=-timedelta(minutes=1))

    counts = [clean_expired_staging(now=timezone.now()).count for _ in range(2)]

    job.refresh_from_db()
    assert counts == [1, 0]
    assert record_states(raw) == ["DELETION_SCHEDULED", "DELETION_SCHEDULED"]  # a delete job removes the files
    assert job.cleaned_at is not None
    assert job.status == JobStatus.READY


def test_cleanup_leaves_unexpired_jobs_alone(cologne):
    job, raw = staged(cologne, expires_in=timedelta(days=1))

    assert clean_expired_staging(now=timezone.now()).count == 0
    assert record_states(raw) == ["PRESENT", "PRESENT"]


def test_cleanup_keeps_records_another_live_job_uses(cologne):
    _, raw = staged(cologne, expires_in=-timedelta(minutes=1))
    staged(cologne, expires_in=timedelta(days=3), raw=raw)
    _, other = staged(cologne, expires_in=-timedelta(minutes=1))

    result = clean_expired_staging(now=timezone.now())

    assert result.count == 2
    assert record_states(raw) == ["PRESENT", "PRESENT"]
    assert record_states(other) == ["DELETION_SCHEDULED", "DELETION_SCHEDULED"]
    assert StagingJob.objects.filter(cleaned_at__isnull=False).count() == 2


def test_cleanup_keeps_records_a_pending_job_will_reuse(cologne):
    _, raw = staged(cologne, expires_in=-timedelta(minutes=1))
    staged(cologne, expires_in=timedelta(days=3), raw=raw, status="PENDING")

    clean_expired_staging(now=timezone.now())

    assert record_states(raw) == ["PRESENT", "PRESENT"]


def test_cleanup_same_package_at_another_location_untouched(cologne):
    _, raw = staged(cologne, expires_in=-timedelta(minutes=1))
    elsewhere = f.DataLocationFactory(site=cologne.site, name="proc-2", location_type=LocationType.PROCESSING)
    f.RawDataFileCopyFactory(raw_file=raw.files.first(), location=elsewhere)

    clean_expired_staging(now=timezone.now())

    assert RawDataFileCopy.objects.get(location=elsewhere).status == CopyStatus.PRESENT


@pytest.mark.parametrize("jobs", [1, 3, 10])
def test_cleanup_query_count_does_not_grow(cologne, jobs):
    for _ in range(jobs):
        staged(cologne, expires_in=-timedelta(minutes=1))

    with CaptureQueriesContext(connection) as queries:
        result = clean_expired_staging(now=timezone.now())

    assert result.count == jobs
    assert RawDataFileCopy.objects.filter(status=CopyStatus.DELETION_SCHEDULED).count() == 2 * jobs
    assert len(queries) <= 8  # jobs · counts · the scheduling transition (savepoint, log insert, update) · cleaned_at


# --- reading only open work ------------------------------------------------------------------------


def test_archiving_flags_copies_it_planned_and_does_not_read_them_again(cologne):
    raw = waiting(cologne.buffer)

    plan_archive_transfers(now=timezone.now())
    LongTermArchiveTransfer.objects.all().delete()  # only the flag is left to say it was done
    second = plan_archive_transfers(now=timezone.now())

    assert raw.copies.get().archive_planned is True
    assert second.count == 0


def test_archiving_flags_copies_whose_archive_transfer_was_made_elsewhere(cologne):
    raw = waiting(cologne.buffer)
    f.LongTermArchiveTransferFactory(raw_package=raw, source_location=cologne.buffer,
                                     destination_location=cologne.archive)

    result = plan_archive_transfers(now=timezone.now())

    assert result.count == 0
    assert raw.copies.get().archive_planned is True


def test_archiving_picks_up_history_when_a_site_gets_an_archive():
    ccat = site("ccat", archive=False)
    raw = waiting(ccat.buffer)
    plan_archive_transfers(now=timezone.now())  # nothing to do, nothing flagged
    archive = f.DataLocationFactory(site=ccat.site, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE)

    result = plan_archive_transfers(now=timezone.now())

    assert result.count == 1
    assert LongTermArchiveTransfer.objects.get().destination_location == archive
    assert raw.copies.get().archive_planned is True
