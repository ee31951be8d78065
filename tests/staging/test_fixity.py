"""Fixity audits: planning checks within the budget, recording results, rechecks, repairs and holds."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import CopyStatus, JobStatus
from opsdb.custody import raw_package_custody
from opsdb.models import RawDataPackageCopy
from opsdb.services import job_claim, job_complete
from opsdb.work import record_copy
from staging.choices import FixityOutcome
from staging.fixity import fixity_check_record, plan_fixity
from staging.models import FixityCheck, FixityHold, LongTermArchiveTransfer
from tests import factories as f
from tests import topology as t

pytestmark = pytest.mark.django_db

GB = 10**9


@pytest.fixture
def sites():
    cologne, cornell = t.site("cologne"), t.site("cornell")
    t.direct(cornell, cologne, method="rsync")
    t.direct(cologne, cornell, method="bbcp")
    return cologne, cornell


def archived(location, *, package=None, size=GB, days_ago: float = 400):
    """A verified PRESENT copy at ``location``, last verified ``days_ago`` days ago."""
    package = package or f.RawDataPackageFactory(size=size)
    return f.RawDataPackageCopyFactory(raw_package=package, location=location, path=f"raw/{package.name}",
                                       checksum_verified=package.checksum,
                                       verified_at=timezone.now() - timedelta(days=days_ago))


def report(job: FixityCheck, **result) -> FixityCheck:
    """A worker claims the check and reports ``result`` through the services."""
    job = job_claim(job=job, worker="auditor")
    job, _ = job_complete(job=job, lease_token=job.lease_token,
                          apply=lambda locked: fixity_check_record(job=locked, **result))
    return job


def tick():
    return plan_fixity(now=timezone.now())


# --- planning checks ------------------------------------------------------------------------------


def test_checks_due_copies_oldest_verified_first_within_the_daily_budget(sites, settings):
    cologne, _ = sites
    settings.FIXITY_BYTES_PER_DAY = 3 * GB
    copies = [archived(cologne.archive, days_ago=days) for days in (400, 700, 500, 366)]
    never = archived(cologne.archive)
    RawDataPackageCopy.objects.filter(pk=never.pk).update(verified_at=None)
    archived(cologne.archive, days_ago=10)  # verified recently: not due

    tick()

    checked = list(FixityCheck.objects.order_by("copy__verified_at").values_list("copy_id", flat=True))
    assert sorted(checked) == sorted([never.pk, copies[1].pk, copies[2].pk])  # never, 700, 500 days: 3 GB
    assert set(FixityCheck.objects.values_list("location_id", "size", "recheck")) == {(cologne.archive.pk, GB, False)}


def test_checks_budget_is_per_location_and_per_day(sites, settings):
    cologne, cornell = sites
    settings.FIXITY_BYTES_PER_DAY = 2 * GB
    for _ in range(3):
        archived(cologne.archive)
        archived(cornell.archive)

    first, second = tick().count, tick().count

    assert (first, second) == (4, 0)  # 2 per archive; the day's budget is spent
    assert FixityCheck.objects.filter(location=cologne.archive).count() == 2


def test_checks_a_copy_bigger_than_the_budget_alone(sites, settings):
    cologne, _ = sites
    settings.FIXITY_BYTES_PER_DAY = GB
    archived(cologne.archive, size=5 * GB)

    assert tick().count == 1
    assert tick().count == 0


def test_checks_skip_buffers_deleted_copies_and_copies_with_an_open_check(sites):
    cologne, _ = sites
    archived(cologne.buffer)
    gone = archived(cologne.archive)
    RawDataPackageCopy.objects.filter(pk=gone.pk).update(status=CopyStatus.DELETION_SCHEDULED)
    busy = archived(cologne.archive)
    FixityCheck.objects.create(copy=busy, location=cologne.archive, size=GB)

    assert tick().count == 0


@pytest.mark.parametrize("copies", [1, 5])
def test_fixity_pass_query_count_does_not_grow(sites, copies):
    cologne, cornell = sites
    for _ in range(copies):
        archived(cologne.archive)

    with CaptureQueriesContext(connection) as queries:
        tick()

    # locations · holds, day's counts · first checks found bad · confirmed bad · per archive: spent, the
    # first copy in due order (one row); where it is due: never verified, verified before the cycle
    # began (two index ranges; not when the first fills the pass) and the insert
    assert FixityCheck.objects.count() == copies
    assert len(queries) == 12


@pytest.mark.parametrize("copies", [1, 5])
def test_fixity_pass_with_nothing_due_reads_one_row_per_archive(sites, copies):
    cologne, cornell = sites
    for _ in range(copies):
        archived(cologne.archive, days_ago=10)
        archived(cornell.archive, days_ago=300)
    bad = archived(cologne.archive)  # verified long ago, but out of service: not PRESENT
    RawDataPackageCopy.objects.filter(pk=bad.pk).update(status=CopyStatus.MISMATCH)

    with CaptureQueriesContext(connection) as queries:
        made = tick().count

    # locations · holds, day's counts · first checks found bad · confirmed bad · per archive: spent, the
    # first copy in due order
    assert made == 0
    assert len(queries) == 9


def test_checks_due_copies_behind_one_with_an_open_check(sites):
    cologne, _ = sites
    busy = archived(cologne.archive, days_ago=700)  # first in due order, already being checked
    FixityCheck.objects.create(copy=busy, location=cologne.archive, size=GB)
    due = archived(cologne.archive, days_ago=400)
    archived(cologne.archive, days_ago=10)

    assert tick().count == 1
    assert FixityCheck.objects.filter(status=JobStatus.PENDING).exclude(copy=busy).get().copy_id == due.pk


# --- results ----------------------------------------------------------------------------------------


def test_good_result_refreshes_verified_at(sites):
    cologne, _ = sites
    copy = archived(cologne.archive)
    tick()

    job = report(FixityCheck.objects.get(), checksum=copy.raw_package.checksum.upper())

    copy.refresh_from_db()
    assert (job.status, job.outcome) == (JobStatus.COMPLETED, FixityOutcome.GOOD)
    assert copy.status == CopyStatus.PRESENT
    assert copy.verified_at > timezone.now() - timedelta(minutes=1)


def test_mismatch_takes_the_copy_out_of_service_and_is_checked_once_more(sites):
    cologne, _ = sites
    copy = archived(cologne.archive)
    tick()

    report(FixityCheck.objects.get(), checksum="ff" * 32)
    copy.refresh_from_db()
    tick()

    assert copy.status == CopyStatus.MISMATCH
    assert raw_package_custody(copy.raw_package).safe_archive_copies == 0
    log = StateLog.objects.get(object_id=copy.pk, transition="mark_mismatch")
    assert "read " + "ff" * 32 in log.description
    recheck = FixityCheck.objects.get(recheck=True)
    assert (recheck.copy, recheck.status) == (copy, JobStatus.PENDING)
    assert tick().count == 0  # one recheck only


def test_missing_file_marks_the_copy_missing(sites):
    cologne, _ = sites
    copy = archived(cologne.archive)
    tick()

    job = report(FixityCheck.objects.get(), missing=True)

    copy.refresh_from_db()
    assert (job.outcome, copy.status) == (FixityOutcome.MISSING, CopyStatus.MISSING)


def test_good_recheck_restores_the_copy(sites):
    cologne, _ = sites
    copy = archived(cologne.archive)
    tick()
    report(FixityCheck.objects.get(), checksum="ff" * 32)
    tick()

    report(FixityCheck.objects.get(recheck=True), checksum=copy.raw_package.checksum)
    tick()

    copy.refresh_from_db()
    assert copy.status == CopyStatus.PRESENT
    assert not LongTermArchiveTransfer.objects.exists()


def test_report_without_checksum_or_missing_is_refused(sites):
    from django.core.exceptions import ValidationError

    cologne, _ = sites
    archived(cologne.archive)
    tick()
    job = job_claim(job=FixityCheck.objects.get(), worker="auditor")

    with pytest.raises(ValidationError):
        job_complete(job=job, lease_token=job.lease_token, apply=lambda locked: fixity_check_record(job=locked))

    job.refresh_from_db()
    assert (job.status, job.outcome) == (JobStatus.ACTIVE, "")


# --- repairs ----------------------------------------------------------------------------------------


def confirmed_bad(copy, **result):
    """First check and recheck both find ``copy`` bad."""
    tick()
    report(FixityCheck.objects.get(copy=copy, recheck=False), **(result or {"checksum": "ff" * 32}))
    tick()
    report(FixityCheck.objects.get(copy=copy, recheck=True), **(result or {"checksum": "ff" * 32}))


def test_confirmed_bad_copy_is_repaired_from_another_sites_archive_by_its_route(sites):
    cologne, cornell = sites
    bad = archived(cologne.archive)
    good = archived(cornell.archive, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad)

    result = tick()

    repair = LongTermArchiveTransfer.objects.get()
    assert (repair.repair_of, repair.source_location, repair.destination_location, repair.method) == (
        bad, good.location, cologne.archive, "rsync")
    assert "fixity: 1 repair: cornell:archive → cologne:archive" in result.lines
    assert tick().count == 0  # once


def test_repair_prefers_a_verified_copy_at_the_same_site(sites):
    cologne, cornell = sites
    bad = archived(cologne.archive)
    archived(cornell.archive, package=bad.raw_package, days_ago=10)
    archived(cologne.buffer, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad, missing=True)

    tick()

    repair = LongTermArchiveTransfer.objects.get()
    assert (repair.source_location, repair.method) == (cologne.buffer, "copy")


def test_repair_completed_brings_the_copy_back_present_and_verified(sites):
    cologne, cornell = sites
    bad = archived(cologne.archive)
    archived(cornell.archive, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad)
    tick()
    repair = LongTermArchiveTransfer.objects.get()

    t.finish(repair, apply=lambda job: record_copy(RawDataPackageCopy, raw_package=job.raw_package,
                                                   location=job.destination_location, path=bad.path,
                                                   checksum=job.raw_package.checksum))

    bad.refresh_from_db()
    assert (bad.status, bad.checksum_verified) == (CopyStatus.PRESENT, bad.raw_package.checksum)
    assert raw_package_custody(bad.raw_package).safe_archive_copies == 2
    assert tick().count == 0


def test_no_repair_without_another_verified_copy_or_route(sites):
    cologne, _ = sites
    far = t.site("far")  # no route from far to cologne
    bad = archived(cologne.archive)
    archived(far.archive, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad)

    result = tick()

    assert not LongTermArchiveTransfer.objects.exists()
    assert any("no verified copy to repair from" in line for line in result.lines)


def test_repair_payload_names_the_bad_copys_path_and_the_method(sites):
    from staging.archive_work import ArchiveHandler

    cologne, cornell = sites
    bad = archived(cologne.archive)
    RawDataPackageCopy.objects.filter(pk=bad.pk).update(path="raw/old-layout/x.tar")
    archived(cornell.archive, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad)
    tick()
    handler = ArchiveHandler()

    payload = handler.payload(handler.queryset().get())

    assert (payload["destination"]["path"], payload["method"], payload["repair"]) == (
        "raw/old-layout/x.tar", "rsync", True)
    assert payload["source"]["location"]["site"] == "cornell"


# --- holds ------------------------------------------------------------------------------------------


def test_many_failures_in_a_day_hold_automatic_repair_at_that_location(sites, settings):
    cologne, cornell = sites
    settings.FIXITY_HOLD_MIN_FAILURES = 2
    goods = [archived(cologne.archive) for _ in range(8)]
    bads = [archived(cologne.archive) for _ in range(2)]
    for copy in bads:
        archived(cornell.archive, package=copy.raw_package, days_ago=10)
    tick()
    for copy in goods:
        report(FixityCheck.objects.get(copy=copy), checksum=copy.raw_package.checksum)
    for copy in bads:
        report(FixityCheck.objects.get(copy=copy), checksum="ff" * 32)

    result = tick()
    for copy in bads:
        report(FixityCheck.objects.get(copy=copy, recheck=True), checksum="ff" * 32)
    tick()

    hold = FixityHold.objects.get()
    assert (hold.location, hold.checks, hold.failures, hold.released_at) == (cologne.archive, 10, 2, None)
    assert any("2 of 10 fixity checks in 24 hours failed at cologne:archive" in line for line in result.lines)
    assert not LongTermArchiveTransfer.objects.exists()  # nothing copied over until an operator looked

    FixityHold.objects.update(released_at=timezone.now(), released_by="operator")
    tick()

    assert LongTermArchiveTransfer.objects.filter(repair_of__in=bads).count() == 2
    assert FixityHold.objects.count() == 1  # the same day's failures do not hold it again


def test_a_single_bad_copy_is_repaired_without_a_hold(sites):
    cologne, cornell = sites
    bad = archived(cologne.archive)
    archived(cornell.archive, package=bad.raw_package, days_ago=10)
    confirmed_bad(bad)

    tick()

    assert not FixityHold.objects.exists()
    assert LongTermArchiveTransfer.objects.filter(repair_of=bad).exists()


def test_bad_copies_show_under_needs_attention(sites):
    from opsdb.templatetags.opsdb_admin import ops_attention

    cologne, _ = sites
    bad = archived(cologne.archive)
    tick()
    report(FixityCheck.objects.get(copy=bad), missing=True)

    items = {item["label"]: item for item in ops_attention()}

    assert items["Archive copies found bad by an audit"]["count"] == 1



# --- concurrency ------------------------------------------------------------------------------------


def concurrently(count: int, run) -> list[str]:
    """Run ``run()`` in ``count`` threads at once, each with its own connection; return their errors."""
    import threading

    from django.db import connection as thread_connection

    barrier, errors = threading.Barrier(count), []

    def target():
        try:
            barrier.wait()
            run()
        except Exception as exc:  # reported by the caller
            errors.append(repr(exc))
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_make_each_check_recheck_and_repair_once(sites):
    cologne, cornell = sites
    copies = [archived(cologne.archive) for _ in range(20)]
    for copy in copies[:3]:
        archived(cornell.archive, package=copy.raw_package, days_ago=10)

    assert concurrently(4, tick) == []
    open_checks = FixityCheck.objects.filter(status=JobStatus.PENDING)
    assert open_checks.count() == 20
    for copy in copies[:3]:
        report(open_checks.get(copy=copy), checksum="ff" * 32)
    assert concurrently(4, tick) == []
    assert FixityCheck.objects.filter(recheck=True).count() == 3
    for copy in copies[:3]:
        report(FixityCheck.objects.get(copy=copy, recheck=True), checksum="ff" * 32)
    assert concurrently(4, tick) == []
    assert FixityHold.objects.count() == 1  # 3 of 20 failed: held once, whatever the race
    FixityHold.objects.update(released_at=timezone.now(), released_by="operator")

    assert concurrently(4, tick) == []

    assert LongTermArchiveTransfer.objects.filter(repair_of__isnull=False).count() == 3
    assert FixityHold.objects.count() == 1
