"""The deletion pass: policies, watermarks, switches, pausing, and the jobs it makes."""

import pytest
from django.db import connection
from django.utils import timezone
from django_fsm_log.models import StateLog

from custody.models import DeletionItem, DeletionJob, DeletionOutcome
from custody.planning import plan_deletions, used_bytes
from opsdb.choices import CopyStatus, DeletionPolicy, JobStatus
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from opsdb.scheduler import plan_dry_run
from opsdb.services import job_cancel
from tests import factories as f
from tests.custody.scenario import archived, deliver, policy, world
from tests.topology import site
from transfers.models import DataTransferPackageCopy

pytestmark = pytest.mark.django_db


def statuses(location) -> list[str]:
    return sorted(RawDataPackageCopy.objects.filter(location=location).values_list("status", flat=True))


def test_when_safe_schedules_archived_copies_and_their_bundle_and_makes_jobs():
    w = world(packages=3)
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    result = plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer) == [CopyStatus.DELETION_SCHEDULED] * 3
    assert DataTransferPackageCopy.objects.get(location=w.ccat.buffer).status == CopyStatus.DELETION_SCHEDULED
    jobs = DeletionJob.objects.filter(location=w.ccat.buffer)
    assert jobs.count() == 2  # one per kind of copy
    assert DeletionItem.objects.filter(job__in=jobs).count() == 4
    assert any("ccat:buffer (WHEN_SAFE) scheduled for deletion" in line and "cologne, cornell" in line
               for line in result.lines), result.lines


def test_pass_is_idempotent():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    plan_deletions(now=timezone.now())

    again = plan_deletions(now=timezone.now())

    assert (again.count, DeletionJob.objects.count(), again.lines) == (0, 2, [])


def test_nothing_is_scheduled_before_every_required_archive_has_it():
    w = world()
    deliver(w, w.cologne)

    plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 2
    assert DeletionJob.objects.count() == 0


@pytest.mark.parametrize("change", [{"deletion_policy": DeletionPolicy.NEVER}, {"deletion_enabled": False},
                                    {"deletion_paused_reason": "too many failures"}, {"active": False}])
def test_location_that_does_not_delete_schedules_nothing(change):
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    DataLocation.objects.filter(pk=w.ccat.buffer.pk).update(**change)

    plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 2


def test_archives_are_never_scheduled_even_with_a_policy():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    policy(w.cologne.archive)

    plan_deletions(now=timezone.now())

    assert statuses(w.cologne.archive) == [CopyStatus.PRESENT] * 2


def test_jobs_are_split_at_the_maximum(settings):
    settings.DELETE_JOB_MAX_COPIES = 2
    w = world(packages=5)
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    plan_deletions(now=timezone.now())

    raw_jobs = DeletionJob.objects.filter(items__raw_package_copy__isnull=False).distinct()
    assert sorted(job.items.count() for job in raw_jobs) == [1, 2, 2]
    assert sorted(job.size for job in raw_jobs) == [1000, 2000, 2000]


# locations · items of cancelled jobs · required sites (locations, routes) · per deleting location: site
# names, the pick (both kinds, at most the cap), raw schedule, bundle schedule (each with its savepoints
# and, the first time, its content type) · jobs: deleting locations, per kind: groups, then for the kinds
# that have some: job insert, item insert, sizes. The same with the cap reached (more left for next pass).
PASS_QUERIES = 27


@pytest.mark.parametrize("packages", [1, 3, 10])
@pytest.mark.parametrize("cap", [None, 2])
def test_pass_queries_do_not_grow_with_copies(packages, cap, settings, django_assert_max_num_queries):
    if cap:
        settings.DELETION_MAX_COPIES_PER_PASS = cap
    w = world(packages=packages)
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    with django_assert_max_num_queries(PASS_QUERIES + (connection.vendor == "postgresql")):  # jit off
        plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer).count(CopyStatus.DELETION_SCHEDULED) == min(packages, cap or packages)


def test_when_safe_takes_at_most_the_cap_per_pass_and_drains_the_rest_in_the_next(settings):
    settings.DELETION_MAX_COPIES_PER_PASS = 2
    w = world(packages=5)
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    first = plan_deletions(now=timezone.now())
    counts = [statuses(w.ccat.buffer).count(CopyStatus.DELETION_SCHEDULED)]
    for _ in range(3):
        plan_deletions(now=timezone.now())
        counts.append(statuses(w.ccat.buffer).count(CopyStatus.DELETION_SCHEDULED))

    assert counts == [2, 4, 5, 5]
    assert any("more next pass (at most 2 copies a pass)" in line for line in first.lines), first.lines
    assert DataTransferPackageCopy.objects.get(location=w.ccat.buffer).status == CopyStatus.DELETION_SCHEDULED
    assert DeletionItem.objects.filter(raw_package_copy__location=w.ccat.buffer).count() == 5


def test_the_cap_is_per_location(settings):
    settings.DELETION_MAX_COPIES_PER_PASS = 1
    w = world(packages=3)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    policy(w.cologne.buffer)

    plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer).count(CopyStatus.DELETION_SCHEDULED) == 1
    assert statuses(w.cologne.buffer).count(CopyStatus.DELETION_SCHEDULED) == 1


# --- UNDER_PRESSURE ------------------------------------------------------------------------------

def pressured(packages: int, capacity: int, **marks):
    w = world(packages=packages, size=100)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    # older packages archived first: their archive copies were verified earlier
    for n, package in enumerate(w.packages):
        RawDataPackageCopy.objects.filter(raw_package=package, location__location_type="LONG_TERM_ARCHIVE").update(
            verified_at=timezone.now() - timezone.timedelta(days=100 - n))
    DataTransferPackageCopy.objects.filter(location=w.ccat.buffer).delete()  # raw copies only here
    policy(w.ccat.buffer, DeletionPolicy.UNDER_PRESSURE, capacity_bytes=capacity, **marks)
    return w


def test_under_pressure_below_high_watermark_deletes_nothing():
    w = pressured(packages=8, capacity=1000)  # 800 of 1000: at the high watermark, not above

    plan_deletions(now=timezone.now())

    assert used_bytes(w.ccat.buffer) == 800
    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 8


def test_under_pressure_deletes_oldest_archived_just_to_the_low_watermark():
    w = pressured(packages=9, capacity=1000)  # 900 > 800: free 200 to reach 700

    result = plan_deletions(now=timezone.now())

    scheduled = RawDataPackageCopy.objects.filter(location=w.ccat.buffer, status=CopyStatus.DELETION_SCHEDULED)
    assert sorted(c.raw_package_id for c in scheduled) == sorted(p.pk for p in w.packages[:2])
    assert used_bytes(w.ccat.buffer) == 700
    assert any("UNDER_PRESSURE" in line for line in result.lines), result.lines


def test_under_pressure_takes_the_copy_that_crosses_the_low_watermark_and_no_more():
    w = pressured(packages=9, capacity=1000, low_watermark_percent=75)  # free 150: two copies of 100

    plan_deletions(now=timezone.now())

    assert used_bytes(w.ccat.buffer) == 700
    assert statuses(w.ccat.buffer).count(CopyStatus.DELETION_SCHEDULED) == 2


def test_under_pressure_capped_pass_goes_on_oldest_first_down_to_the_low_watermark(settings):
    settings.DELETION_MAX_COPIES_PER_PASS = 1
    w = pressured(packages=9, capacity=1000, low_watermark_percent=50)  # 900 > 800: free 400 to reach 500
    order = []

    for _ in range(6):
        plan_deletions(now=timezone.now())
        scheduled = RawDataPackageCopy.objects.filter(location=w.ccat.buffer, status=CopyStatus.DELETION_SCHEDULED)
        order.extend(c.raw_package_id for c in scheduled if c.raw_package_id not in order)

    # one a pass, oldest-archived first; on below the high watermark (800) down to the low one (500), no further
    assert order == [p.pk for p in w.packages[:4]]
    assert used_bytes(w.ccat.buffer) == 500
    assert DataLocation.objects.get(pk=w.ccat.buffer.pk).deletion_draining is False


def test_under_pressure_without_capacity_deletes_nothing_and_says_why():
    w = pressured(packages=9, capacity=None)

    result = plan_deletions(now=timezone.now())

    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 9
    assert any("no capacity_bytes" in line for line in result.lines)


# --- failures, pausing, dry run --------------------------------------------------------------------

def test_many_failures_pause_deletion_with_a_reason(settings):
    settings.DELETION_PAUSE_AFTER_FAILURES = 3
    w = world()
    DataLocation.objects.filter(pk=w.ccat.buffer.pk).update(deletion_failures_recent=3,
                                                            deletion_last_error="Permission denied")
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    result = plan_deletions(now=timezone.now())

    location = DataLocation.objects.get(pk=w.ccat.buffer.pk)
    assert "3 deletions failed" in location.deletion_paused_reason
    assert "Permission denied" in location.deletion_paused_reason
    assert location.deletion_failures_recent == 0
    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 2
    assert any("PAUSED" in line for line in result.lines)


def test_few_failures_do_not_pause_and_are_forgotten(settings):
    settings.DELETION_PAUSE_AFTER_FAILURES = 3
    w = world()
    DataLocation.objects.filter(pk=w.ccat.buffer.pk).update(deletion_failures_recent=2)

    plan_deletions(now=timezone.now())

    location = DataLocation.objects.get(pk=w.ccat.buffer.pk)
    assert (location.deletion_paused_reason, location.deletion_failures_recent) == ("", 0)


def test_dry_run_lists_what_would_be_deleted_and_changes_nothing():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    results = plan_dry_run()

    lines = [line for r in results for line in r.lines if line.startswith("deletion:")]
    assert any("ccat:buffer (WHEN_SAFE) scheduled for deletion, freeing 4.0 kB: 2 raw package copies (2.0 kB)"
               in line for line in lines), lines
    assert statuses(w.ccat.buffer) == [CopyStatus.PRESENT] * 2
    assert DeletionJob.objects.count() == 0


def test_cancelled_job_copies_are_kept_and_scheduled_again():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    plan_deletions(now=timezone.now())
    for job in DeletionJob.objects.all():
        job_cancel(job=job)

    plan_deletions(now=timezone.now())

    assert set(DeletionItem.objects.filter(job__status=JobStatus.CANCELLED).values_list("outcome", flat=True)) == {
        DeletionOutcome.KEPT}
    # Kept, then scheduled anew by the policy in the same pass (the deletion switch is what stops it).
    assert statuses(w.ccat.buffer) == [CopyStatus.DELETION_SCHEDULED] * 2
    assert StateLog.objects.filter(transition="keep").count() == 3
    assert DeletionJob.objects.filter(status=JobStatus.PENDING).count() == 2


def test_expired_staging_files_are_scheduled_and_get_a_job():
    location = f.DataLocationFactory(location_type="PROCESSING")
    copy = f.RawDataFileCopyFactory(location=location)
    RawDataFileCopy.objects.filter(pk=copy.pk).update(status=CopyStatus.DELETION_SCHEDULED)

    plan_deletions(now=timezone.now())

    item = DeletionItem.objects.get()
    assert (item.file_copy_id, item.job.location_id, item.job.status) == (copy.pk, location.pk, JobStatus.PENDING)


def test_copies_that_failed_before_wait_the_backoff():
    location = f.DataLocationFactory(location_type="PROCESSING")
    copy = f.RawDataFileCopyFactory(location=location)
    RawDataFileCopy.objects.filter(pk=copy.pk).update(status=CopyStatus.DELETION_SCHEDULED, deletion_failures=2)
    now = timezone.now()

    plan_deletions(now=now)

    job = DeletionJob.objects.get()
    assert job.next_attempt_at > now


def test_data_products_archived_at_home_are_deleted_at_a_when_safe_processing_area():
    cologne = site("cologne", processing=True)
    policy(cologne.processing)
    product = f.RawDataPackageCopyFactory(location=cologne.processing, path="products/map.tar",
                                          checksum_verified="", verified_at=None)
    waiting = f.RawDataPackageCopyFactory(location=cologne.processing)
    archived(product.raw_package, cologne.archive)

    plan_deletions(now=timezone.now())

    product.refresh_from_db()
    waiting.refresh_from_db()
    assert (product.status, waiting.status) == (CopyStatus.DELETION_SCHEDULED, CopyStatus.PRESENT)
    assert DeletionItem.objects.get().job.location == cologne.processing
