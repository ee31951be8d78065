"""The deletion rule, case by case: what may go and what must stay."""

import pytest
from django.db import connection
from django.utils import timezone

from custody.rule import deletable_bundle_copies_sql, deletable_raw_copies_sql, required_archive_sites
from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataPackageCopy
from tests import factories as f
from tests.custody.scenario import archived, deliver, set_status, world
from tests.topology import custom, relay, site
from transfers.models import DataTransferPackageCopy

pytestmark = pytest.mark.django_db


def ids(sql: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM ({sql}) x")
        return {row[0] for row in cursor.fetchall()}


def raw_deletable(location) -> set[int]:
    """The copies the rule allows, asked both ways: set-based, and per row with a limit (the pass's WHEN_SAFE)."""
    allowed = ids(deletable_raw_copies_sql([location.pk], required_archive_sites()))
    assert ids(deletable_raw_copies_sql([location.pk], required_archive_sites(), limit=10**6)) == allowed
    return allowed


def bundle_deletable(location) -> set[int]:
    allowed = ids(deletable_bundle_copies_sql([location.pk], required_archive_sites()))
    assert ids(deletable_bundle_copies_sql([location.pk], required_archive_sites(), limit=10**6)) == allowed
    return allowed


def ccat_copies(w) -> set[int]:
    return set(RawDataPackageCopy.objects.filter(location=w.ccat.buffer).values_list("pk", flat=True))


def test_required_sites_are_the_route_destinations_with_an_archive():
    w = world()

    required = required_archive_sites()

    assert required[w.ccat.site.pk] == {w.cologne.site.pk, w.cornell.site.pk}
    assert required[w.cologne.site.pk] == {w.cologne.site.pk}


def test_raw_copy_may_go_once_archived_at_every_required_site():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    assert raw_deletable(w.ccat.buffer) == ccat_copies(w)


def test_raw_copy_stays_while_one_required_archive_lacks_it():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell, archive=False)

    assert raw_deletable(w.ccat.buffer) == set()


@pytest.mark.parametrize("bad", [{"status": CopyStatus.MISMATCH}, {"status": CopyStatus.MISSING},
                                 {"checksum_verified": ""}, {"checksum_verified": "cd" * 32},
                                 {"status": CopyStatus.DELETION_SCHEDULED}])
def test_raw_copy_stays_when_an_archive_copy_is_not_verified_present(bad):
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    RawDataPackageCopy.objects.filter(location=w.cornell.archive).update(**bad)

    assert raw_deletable(w.ccat.buffer) == set()


def test_min_copies_at_distinct_sites(settings):
    settings.ARCHIVE_MIN_COPIES = 3
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    assert raw_deletable(w.ccat.buffer) == set()


def test_raw_copy_never_goes_without_any_archive(settings):
    ccat = site("ccat", archive=False)
    copy = f.RawDataPackageCopyFactory(location=ccat.buffer)

    assert copy.pk not in raw_deletable(ccat.buffer)


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED])
def test_raw_copy_stays_while_an_archive_transfer_reads_it(status):
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    job = f.LongTermArchiveTransferFactory(raw_package=w.packages[0], source_location=w.cologne.buffer,
                                           destination_location=w.cologne.archive)
    set_status(job, status)

    assert raw_deletable(w.cologne.buffer) == set()


def test_raw_copy_goes_once_the_archive_transfer_is_done():
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    job = f.LongTermArchiveTransferFactory(raw_package=w.packages[0], source_location=w.cologne.buffer,
                                           destination_location=w.cologne.archive)
    set_status(job, JobStatus.COMPLETED)

    assert raw_deletable(w.cologne.buffer) == set(
        RawDataPackageCopy.objects.filter(location=w.cologne.buffer).values_list("pk", flat=True))


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED])
def test_raw_copy_stays_while_its_bundle_is_being_built(status):
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    set_status(w.bundle, status)

    assert raw_deletable(w.ccat.buffer) == set()


def test_raw_copy_stays_while_a_staging_job_reads_it():
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    item = f.StagingJobPackageFactory(raw_package=w.packages[0], source_location=w.ccat.buffer)
    assert raw_deletable(w.ccat.buffer) == set()

    set_status(item.job, JobStatus.READY)
    assert raw_deletable(w.ccat.buffer) == ccat_copies(w)


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED])
def test_raw_copy_stays_while_a_hop_of_its_bundle_leaves_from_there(status):
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    set_status(w.transfers["cornell"], status)

    assert raw_deletable(w.ccat.buffer) == set()


def test_raw_copy_stays_while_the_unpack_where_it_lies_is_open():
    w = world(packages=1)
    deliver(w, w.cologne, unpack=JobStatus.PENDING)
    deliver(w, w.cornell)

    assert raw_deletable(w.cologne.buffer) == set()


def test_raw_copy_at_an_archive_is_never_deletable():
    w = world(packages=1)
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    assert raw_deletable(w.cologne.archive) == set()


def test_relay_destination_is_required():
    """ccat → cornell through cologne: cornell's archive is required before ccat's copy goes."""
    ccat, cologne, cornell = site("ccat", archive=False), site("cologne"), site("cornell")
    relay(ccat, cologne, cornell)

    assert required_archive_sites()[ccat.site.pk] == {cornell.site.pk}


def test_custom_route_destination_is_required():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    custom(ccat.buffer, cologne.archive)

    assert required_archive_sites()[ccat.site.pk] == {cologne.site.pk}


# --- bundle archives ---------------------------------------------------------------------------

def bundle_copy(w, location) -> int:
    return DataTransferPackageCopy.objects.get(transfer_package=w.bundle, location=location).pk


def test_bundle_copy_may_go_once_every_hop_left_and_members_are_safe():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)

    assert bundle_deletable(w.ccat.buffer) == {bundle_copy(w, w.ccat.buffer)}


def test_bundle_copy_stays_while_a_hop_from_there_is_open():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    set_status(w.transfers["cornell"], JobStatus.PENDING)

    assert bundle_deletable(w.ccat.buffer) == set()


def test_relay_bundle_copy_stays_until_the_next_hop_arrived_and_its_data_is_archived():
    w = world(packages=1)
    first = deliver(w, w.cologne)
    f.DataTransferPackageCopyFactory(transfer_package=w.bundle, location=w.cologne.buffer)
    second = f.DataTransferFactory(transfer_package=w.bundle, origin_location=w.cologne.buffer,
                                   destination_location=w.cornell.buffer, previous=first, hop=2)
    assert bundle_deletable(w.cologne.buffer) == set()

    set_status(second, JobStatus.TRANSFERRED)
    assert bundle_deletable(w.cologne.buffer) == set()  # cornell has not archived it yet

    archived(w.packages[0], w.cornell.archive)
    assert bundle_deletable(w.cologne.buffer) == {bundle_copy(w, w.cologne.buffer)}


def test_bundle_copy_stays_while_a_member_is_not_safe():
    w = world()
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    RawDataPackageCopy.objects.filter(location=w.cornell.archive, raw_package=w.packages[1]).update(
        status=CopyStatus.MISSING, verified_at=timezone.now())

    assert bundle_deletable(w.ccat.buffer) == set()


def test_data_product_at_a_processing_area_may_go_once_archived_at_its_site():
    cologne = site("cologne", processing=True)
    product = f.RawDataPackageCopyFactory(location=cologne.processing, path="products/map.tar")
    f.RawDataPackageCopyFactory(location=cologne.processing)  # not archived yet: stays
    archived(product.raw_package, cologne.archive)

    assert raw_deletable(cologne.processing) == {product.pk}


def test_data_product_stays_while_its_archive_transfer_reads_it():
    cologne = site("cologne", processing=True)
    product = f.RawDataPackageCopyFactory(location=cologne.processing)
    archived(product.raw_package, cologne.archive)
    f.LongTermArchiveTransferFactory(raw_package=product.raw_package, source_location=cologne.processing,
                                     destination_location=f.DataLocationFactory(
                                         site=cologne.site, name="archive-2", location_type="LONG_TERM_ARCHIVE"))

    assert raw_deletable(cologne.processing) == set()
