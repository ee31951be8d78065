"""Used bytes per location counted as copies change (triggers + the history pass's fold), never summed from history.

Each test changes copies the way ops-db does (factories, transitions one by one and in bulk, the upsert
of a worker's report, deletes, a bundle's size known after its first copy) and checks that the folded
totals equal a full sum over the copy tables.
"""

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from operations.history import record_history
from operations.models import LocationSample, LocationUsage, LocationUsageChange, Resolution
from operations.usage import fold_changes, location_used_bytes, recount
from opsdb.choices import CopyStatus
from opsdb.copies import copies_transition, copy_transition
from opsdb.models import RawDataPackageCopy
from opsdb.services import job_claim, job_complete
from opsdb.work import record_copy
from tests import factories as f
from tests import topology as t
from transfers.models import DataTransferPackageCopy
from transfers.work import PackageHandler

pytestmark = pytest.mark.django_db


@pytest.fixture
def where():
    ccat, cologne = t.site("ccat", archive=False), t.site("cologne", processing=True)
    return {"ccat": ccat, "cologne": cologne}


def folded() -> dict[int, int]:
    """The folded totals, without the locations at zero (a full sum has no row for those)."""
    return {pk: n for pk, n in fold_changes().items() if n}


def summed() -> dict[int, int]:
    return {pk: n for pk, n in location_used_bytes().items() if n}


def test_new_copies_are_counted_where_they_are(where):
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    t.waiting(where["ccat"].buffer, size=2 * t.GB)
    f.RawDataPackageCopyFactory(raw_package__size=7 * t.GB, location=where["cologne"].buffer,
                                status=CopyStatus.DELETED)

    assert folded() == {where["ccat"].buffer.pk: 5 * t.GB}
    assert not LocationUsageChange.objects.exists()


def test_changes_are_added_once_across_folds(where):
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    assert folded() == {where["ccat"].buffer.pk: 3 * t.GB}

    t.waiting(where["ccat"].buffer, size=2 * t.GB)

    assert folded() == {where["ccat"].buffer.pk: 5 * t.GB}
    assert folded() == {where["ccat"].buffer.pk: 5 * t.GB}


def test_a_transition_one_copy_at_a_time_moves_its_bytes(where):
    package = t.waiting(where["ccat"].buffer, size=3 * t.GB)
    f.RawDataPackageCopyFactory(raw_package=package, location=where["cologne"].archive,
                                checksum_verified=package.checksum, verified_at=timezone.now())
    copy = RawDataPackageCopy.objects.get(raw_package=package, location=where["ccat"].buffer)

    copy = copy_transition(copy=copy, transition="schedule_deletion")
    assert folded() == summed() == {where["cologne"].archive.pk: 3 * t.GB}

    copy = copy_transition(copy=copy, transition="keep")
    assert folded() == summed() == {where["ccat"].buffer.pk: 3 * t.GB, where["cologne"].archive.pk: 3 * t.GB}


def test_bulk_transitions_move_every_copy_and_leave_the_others(where):
    archive = where["cologne"].archive
    for size in (1, 2, 4):
        package = t.waiting(where["ccat"].buffer, size=size * t.GB)
        f.RawDataPackageCopyFactory(raw_package=package, location=archive, checksum_verified=package.checksum,
                                    verified_at=timezone.now())
    buffer_copies = RawDataPackageCopy.objects.filter(location=where["ccat"].buffer)

    moved = copies_transition(buffer_copies.filter(raw_package__size__lte=2 * t.GB), "schedule_deletion")
    assert moved == 2
    assert folded() == summed() == {where["ccat"].buffer.pk: 4 * t.GB, archive.pk: 7 * t.GB}

    copies_transition(buffer_copies, "start_deletion")
    copies_transition(buffer_copies, "mark_deleted")
    RawDataPackageCopy.objects.filter(location=archive).update(verified_at=timezone.now())  # not a move
    assert folded() == summed() == {where["ccat"].buffer.pk: 4 * t.GB, archive.pk: 7 * t.GB}


def test_a_copy_recorded_again_counts_again_and_a_refresh_does_not_double(where):
    package = t.waiting(where["ccat"].buffer, size=3 * t.GB)
    copy = RawDataPackageCopy.objects.get(raw_package=package)
    RawDataPackageCopy.objects.filter(pk=copy.pk).update(status=CopyStatus.MISSING)  # an audit found no file
    assert folded() == summed() == {}

    record_copy(RawDataPackageCopy, location=where["ccat"].buffer, path="raw/x", checksum=package.checksum,
                raw_package=package)  # INSERT … ON CONFLICT DO UPDATE: the old row becomes PRESENT
    record_copy(RawDataPackageCopy, location=where["ccat"].buffer, path="raw/x", checksum=package.checksum,
                raw_package=package)  # and again: PRESENT stays PRESENT

    assert folded() == summed() == {where["ccat"].buffer.pk: 3 * t.GB}


def test_deleted_rows_take_their_bytes_with_them(where):
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    t.waiting(where["ccat"].buffer, size=2 * t.GB)
    fold_changes()

    RawDataPackageCopy.objects.filter(raw_package__size=2 * t.GB).delete()

    assert folded() == summed() == {where["ccat"].buffer.pk: 3 * t.GB}


def test_a_bundle_counts_with_the_size_its_builder_reports_after_recording_its_copy(where):
    bundle = f.DataTransferPackageFactory(origin_location=where["ccat"].buffer, payload_size=9 * t.GB)
    job = job_claim(job=bundle, worker="builder")

    job_complete(job=job, lease_token=job.lease_token,
                 apply=lambda job: PackageHandler().apply_result(job, {"size": 8 * t.GB, "checksum": "c" * 64}))

    assert DataTransferPackageCopy.objects.get().status == CopyStatus.PRESENT
    assert folded() == summed() == {where["ccat"].buffer.pk: 8 * t.GB}


def test_a_copy_that_moves_to_another_location_or_object_moves_its_bytes(where):
    package = t.waiting(where["ccat"].buffer, size=3 * t.GB)
    other = f.RawDataPackageFactory(size=5 * t.GB)
    copy = RawDataPackageCopy.objects.get(raw_package=package)

    RawDataPackageCopy.objects.filter(pk=copy.pk).update(location=where["cologne"].buffer)
    assert folded() == summed() == {where["cologne"].buffer.pk: 3 * t.GB}

    RawDataPackageCopy.objects.filter(pk=copy.pk).update(raw_package=other)
    package.size = 4 * t.GB
    package.save()  # no copy of it any more: nothing to move
    assert folded() == summed() == {where["cologne"].buffer.pk: 5 * t.GB}


def test_staged_file_copies_count(where):
    processing = where["cologne"].processing
    f.RawDataFileCopyFactory(raw_file__size=10**6, location=processing)
    copy = f.RawDataFileCopyFactory(raw_file__size=3 * 10**6, location=processing)
    assert folded() == summed() == {processing.pk: 4 * 10**6}

    copy.raw_file.size = 2 * 10**6
    copy.raw_file.save()

    assert folded() == summed() == {processing.pk: 3 * 10**6}


def test_the_history_pass_samples_the_counted_bytes_every_tick(where):
    now = timezone.now()
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    record_history(now=now)
    t.waiting(where["ccat"].buffer, size=2 * t.GB)

    record_history(now=now)  # the same 5-minute bucket: the sample follows its last tick

    used = dict(LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES, start__lte=now)
                .values_list("location_id", "used_bytes"))
    assert used[where["ccat"].buffer.pk] == 5 * t.GB
    assert used[where["cologne"].archive.pk] == 0


def test_recount_starts_again_from_the_copy_tables(where):
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    LocationUsage.objects.create(location=where["cologne"].buffer, used_bytes=10**12)  # e.g. a bulk load's drift

    used = recount()

    assert {pk: n for pk, n in used.items() if n} == {where["ccat"].buffer.pk: 3 * t.GB}
    assert not LocationUsageChange.objects.exists()
    assert folded() == {where["ccat"].buffer.pk: 3 * t.GB}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement-level triggers: PostgreSQL")
def test_a_bulk_statement_appends_one_change_per_location(where):
    packages = [f.RawDataPackageFactory(size=t.GB) for _ in range(50)]

    RawDataPackageCopy.objects.bulk_create([RawDataPackageCopy(raw_package=p, location=loc, path=p.name)
                                            for p in packages for loc in (where["ccat"].buffer,
                                                                          where["cologne"].buffer)])

    assert sorted(LocationUsageChange.objects.values_list("bytes", flat=True)) == [50 * t.GB, 50 * t.GB]


def test_a_change_whose_location_is_gone_is_dropped_by_the_fold(where):
    buffer = where["ccat"].buffer
    t.waiting(buffer, size=3 * t.GB)
    LocationUsageChange.objects.create(location_id=buffer.pk + 10_000, bytes=t.GB)  # no such location

    assert folded() == {buffer.pk: 3 * t.GB}
    assert not LocationUsageChange.objects.exists()
    assert not LocationUsage.objects.filter(location_id=buffer.pk + 10_000).exists()


@pytest.mark.django_db(transaction=True)
def test_a_flush_that_empties_the_changes_before_the_copies_commits(where, monkeypatch):
    """Django's flush (every transactional test's teardown) deletes the tables in set order, which varies.

    On SQLite it deletes row by row and the triggers fire: emptying the changes first, then the locations
    and copies, used to leave changes pointing at deleted locations and fail the flush's COMMIT (then every
    later test of that process). On PostgreSQL the flush is a TRUNCATE, which the triggers do not see.
    """
    t.waiting(where["ccat"].buffer, size=3 * t.GB)
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    first = [LocationUsageChange._meta.db_table, "opsdb_datalocation", "opsdb_rawdatapackagecopy"]
    ordered = first + [table for table in tables if table not in first]
    monkeypatch.setattr(connection.introspection, "django_table_names", lambda *args, **kwargs: ordered)

    call_command("flush", interactive=False, verbosity=0)

    assert not RawDataPackageCopy.objects.exists()
    assert fold_changes() == {}
