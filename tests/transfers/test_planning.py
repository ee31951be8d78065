"""Bundling, routing (direct, relay, custom) and unpack planning."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opsdb.choices import JobStatus, LocationType, TransferMethod
from opsdb.models import RawDataPackage
from opsdb.services import job_cancel
from tests import factories as f
from tests.topology import GB, arrive, build, custom, direct, relay, site, waiting
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageMember,
    DataTransferUnpack,
)
from transfers.planning import BundlePolicy, first_fit_decreasing, plan_bundles, plan_transfers, plan_unpacks

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


@pytest.fixture
def ccat():
    return site("ccat", archive=False)


@pytest.fixture
def cologne():
    return site("cologne")


@pytest.fixture
def cornell():
    return site("cornell")


def payloads() -> list[int]:
    return sorted(DataTransferPackage.objects.values_list("payload_size", flat=True))


def members_of(bundle) -> set[int]:
    return set(bundle.members.values_list("raw_package_id", flat=True))


def transfers() -> list[tuple[str, str, str, int]]:
    return sorted(
        (str(t.origin_location), str(t.destination_location), t.method, t.hop)
        for t in DataTransfer.objects.select_related("origin_location__site", "destination_location__site")
    )


def built_bundle(location, *, sizes=(5 * GB,)):
    bundle = f.DataTransferPackageFactory(origin_location=location, payload_size=sum(sizes))
    for size in sizes:
        f.DataTransferPackageMemberFactory(transfer_package=bundle, raw_package__size=size)
    return build(bundle)


# --- packing --------------------------------------------------------------------------------------


def test_first_fit_decreasing_never_splits_and_respects_capacity():
    sizes = [7, 5, 4, 3, 2, 2, 1]

    bins = first_fit_decreasing(sizes, 10)

    assert sorted(i for b in bins for i in b) == list(range(len(sizes)))
    assert [sum(sizes[i] for i in b) for b in bins] == [10, 10, 4]


def test_first_fit_decreasing_oversized_item_alone():
    bins = first_fit_decreasing([3, 15, 2], 10)

    assert bins == [[1], [0, 2]]


def test_bundle_policy_takes_strictest_route_settings(ccat, cologne, cornell):
    a = direct(ccat, cologne, bundle_target_size=20 * GB, bundle_max_wait=HOUR)
    b = direct(ccat, cornell, bundle_target_size=10 * GB)

    policy = BundlePolicy.for_routes([a, b])

    assert policy == BundlePolicy(target_size=10 * GB, max_wait=HOUR)


# --- bundling -------------------------------------------------------------------------------------


def test_bundling_seals_full_bundles_and_keeps_the_rest_waiting(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=10 * GB, bundle_max_wait=HOUR)
    for _ in range(5):
        waiting(ccat.buffer, size=4 * GB)

    result = plan_bundles(now=timezone.now())

    assert result.count == 2
    assert payloads() == [8 * GB, 8 * GB]
    assert DataTransferPackageMember.objects.count() == 4


def test_bundling_seals_bundle_that_reaches_target(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=10 * GB, bundle_max_wait=HOUR)
    raw = {waiting(ccat.buffer, size=5 * GB).pk for _ in range(2)}

    plan_bundles(now=timezone.now())

    bundle = DataTransferPackage.objects.get()
    assert members_of(bundle) == raw
    assert (bundle.payload_size, bundle.target_size, bundle.status) == (10 * GB, 10 * GB, JobStatus.PENDING)
    assert bundle.origin_location == ccat.buffer


def test_bundling_oversized_package_gets_its_own_bundle(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=10 * GB, bundle_max_wait=HOUR)
    big = waiting(ccat.buffer, size=15 * GB)
    waiting(ccat.buffer, size=3 * GB)

    plan_bundles(now=timezone.now())

    bundle = DataTransferPackage.objects.get()
    assert members_of(bundle) == {big.pk}
    assert bundle.payload_size == 15 * GB


def test_bundling_under_target_waits_until_max_wait(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=10 * GB, bundle_max_wait=HOUR)
    now = timezone.now()
    raw = {waiting(ccat.buffer, size=3 * GB, age=timedelta(minutes=50), now=now).pk for _ in range(2)}

    early = plan_bundles(now=now)
    late = plan_bundles(now=now + timedelta(minutes=11))

    assert (early.count, late.count) == (0, 1)
    assert members_of(DataTransferPackage.objects.get()) == raw


def test_bundling_uses_global_settings_without_route_values(ccat, cologne, settings):
    settings.BUNDLE_TARGET_SIZE_BYTES = 6 * GB
    settings.BUNDLE_MAX_WAIT_SECONDS = 60
    direct(ccat, cologne)
    now = timezone.now()
    waiting(ccat.buffer, size=6 * GB, now=now)
    waiting(ccat.buffer, size=1 * GB, age=timedelta(seconds=30), now=now)

    first = plan_bundles(now=now)
    second = plan_bundles(now=now + timedelta(seconds=31))

    assert (first.count, second.count) == (1, 1)
    assert payloads() == [1 * GB, 6 * GB]


def test_bundling_names_bundle_after_site_and_time(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer, size=5 * GB)
    now = timezone.now()

    plan_bundles(now=now)

    bundle = DataTransferPackage.objects.get()
    assert re.fullmatch(rf"dtp-ccat-{now:%Y%m%d%H%M%S}-1\.tar", bundle.name)
    assert bundle.archive_path == f"bundles/{bundle.name}"


def test_bundling_names_stay_unique_within_one_second(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=5 * GB)
    now = timezone.now()
    waiting(ccat.buffer, size=5 * GB)
    plan_bundles(now=now)
    waiting(ccat.buffer, size=5 * GB)

    plan_bundles(now=now)

    assert sorted(n.rsplit("-", 1)[1] for n in DataTransferPackage.objects.values_list("name", flat=True)) == [
        "1.tar", "2.tar"]


def test_bundling_never_rebundles_unpacked_arrivals(ccat, cologne, cornell):
    direct(cologne, cornell, bundle_target_size=1 * GB, bundle_max_wait=timedelta(0))
    arrived = f.DataTransferPackageMemberFactory(transfer_package__origin_location=ccat.buffer).raw_package
    f.RawDataPackageCopyFactory(raw_package=arrived, location=cologne.buffer)
    fresh = waiting(cologne.buffer)

    plan_bundles(now=timezone.now())

    assert members_of(DataTransferPackage.objects.get(origin_location=cologne.buffer)) == {fresh.pk}


def test_bundling_needs_an_active_outgoing_route(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=1 * GB, active=False)
    direct(cologne, ccat, bundle_target_size=1 * GB)  # into ccat: not outgoing from ccat
    waiting(ccat.buffer)
    waiting(ccat.buffer, age=timedelta(days=30))

    result = plan_bundles(now=timezone.now())

    assert result.count == 0
    assert DataTransferPackage.objects.count() == 0


def test_bundling_ignores_copies_outside_buffers_and_deleted_ones(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=1 * GB, bundle_max_wait=timedelta(0))
    source = f.DataLocationFactory(site=ccat.site, name="source", location_type=LocationType.SOURCE)
    waiting(source)
    f.RawDataPackageCopyFactory(location=ccat.buffer, status="DELETED")

    assert plan_bundles(now=timezone.now()).count == 0


def test_bundling_custom_route_origin_bundles_with_its_own_target(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=100 * GB, bundle_max_wait=HOUR)
    express = f.DataLocationFactory(site=ccat.site, name="buffer-express", location_type=LocationType.BUFFER)
    custom(express, cologne.archive, bundle_target_size=2 * GB, bundle_max_wait=HOUR)
    waiting(express, size=2 * GB)
    waiting(ccat.buffer, size=2 * GB)

    plan_bundles(now=timezone.now())

    bundle = DataTransferPackage.objects.get()
    assert (bundle.origin_location, bundle.target_size) == (express, 2 * GB)


def test_bundling_package_at_two_buffers_is_bundled_once(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=1 * GB, bundle_max_wait=timedelta(0))
    other = f.DataLocationFactory(site=ccat.site, name="buffer-2", location_type=LocationType.BUFFER, priority=5)
    raw = waiting(ccat.buffer)
    f.RawDataPackageCopyFactory(raw_package=raw, location=other)

    plan_bundles(now=timezone.now())

    bundle = DataTransferPackage.objects.get()
    assert (members_of(bundle), bundle.origin_location) == ({raw.pk}, other)


def test_bundling_twice_creates_nothing_twice(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=10 * GB, bundle_max_wait=HOUR)
    for _ in range(4):
        waiting(ccat.buffer, size=5 * GB)
    now = timezone.now()

    first = plan_bundles(now=now)
    second = plan_bundles(now=now)

    assert (first.count, second.count) == (2, 0)
    assert DataTransferPackage.objects.count() == 2


def test_bundling_flags_bundled_packages_and_does_not_read_them_again(ccat, cologne):
    direct(ccat, cologne, bundle_target_size=5 * GB)
    bundled = waiting(ccat.buffer, size=5 * GB)
    flagged_by_hand = waiting(ccat.buffer, size=5 * GB)
    RawDataPackage.objects.filter(pk=flagged_by_hand.pk).update(bundled=True)

    result = plan_bundles(now=timezone.now())

    assert result.count == 1
    assert list(DataTransferPackageMember.objects.values_list("raw_package_id", flat=True)) == [bundled.pk]
    assert RawDataPackage.objects.get(pk=bundled.pk).bundled is True


def test_bundling_flags_memberships_made_elsewhere(ccat, cologne):
    direct(ccat, cologne)
    member = f.DataTransferPackageMemberFactory(raw_package=waiting(ccat.buffer))

    result = plan_bundles(now=timezone.now())

    assert result.count == 0
    assert RawDataPackage.objects.get(pk=member.raw_package_id).bundled is True


@pytest.mark.parametrize("sealed", [1, 3, 10])
def test_bundling_query_count_does_not_grow(ccat, cologne, sealed):
    direct(ccat, cologne, bundle_target_size=5 * GB, bundle_max_wait=HOUR)
    for _ in range(sealed):
        waiting(ccat.buffer, size=5 * GB)
    waiting(ccat.buffer, size=1 * GB)  # stays waiting

    with CaptureQueriesContext(connection) as queries:
        result = plan_bundles(now=timezone.now())

    assert result.count == sealed
    assert len(queries) == 7


# --- routing --------------------------------------------------------------------------------------


def test_routing_direct_goes_to_the_best_destination_buffer(ccat, cologne):
    direct(ccat, cologne)
    f.DataLocationFactory(site=cologne.site, name="buffer-old", location_type=LocationType.BUFFER, priority=-1)
    f.DataLocationFactory(site=cologne.site, name="buffer-off", location_type=LocationType.BUFFER, priority=9,
                          active=False)
    bundle = built_bundle(ccat.buffer)

    result = plan_transfers(now=timezone.now())

    transfer = DataTransfer.objects.get()
    assert result.count == 1
    assert (transfer.transfer_package, transfer.origin_location, transfer.destination_location) == (
        bundle, ccat.buffer, cologne.buffer)
    assert (transfer.method, transfer.hop, transfer.previous, transfer.status) == (
        TransferMethod.BBCP, 1, None, JobStatus.PENDING)


def test_routing_waits_for_the_bundle_to_be_built(ccat, cologne):
    direct(ccat, cologne)
    f.DataTransferPackageFactory(origin_location=ccat.buffer)

    assert plan_transfers(now=timezone.now()).count == 0


def test_routing_several_destinations_from_one_bundle(ccat, cologne, cornell):
    direct(ccat, cologne)
    direct(ccat, cornell, method=TransferMethod.S3)
    built_bundle(ccat.buffer)

    plan_transfers(now=timezone.now())

    assert transfers() == [
        ("ccat:buffer", "cologne:buffer", "bbcp", 1),
        ("ccat:buffer", "cornell:buffer", "s3", 1),
    ]


def test_routing_relay_without_direct_route_forwards_after_arrival(ccat, cologne, cornell):
    route = relay(ccat, cologne, cornell, method=TransferMethod.RSYNC)
    built_bundle(ccat.buffer)

    plan_transfers(now=timezone.now())
    first = DataTransfer.objects.get()
    before_arrival = plan_transfers(now=timezone.now())
    arrive(first)
    after_arrival = plan_transfers(now=timezone.now())

    second = DataTransfer.objects.get(hop=2)
    assert (first.destination_location, first.route, first.method) == (cologne.buffer, route, "rsync")
    assert (before_arrival.count, after_arrival.count) == (0, 1)
    assert (second.origin_location, second.destination_location, second.previous) == (
        cologne.buffer, cornell.buffer, first)
    assert (second.route, second.method) == (route, "rsync")


def test_routing_relay_shares_its_first_hop_with_a_direct_route(ccat, cologne, cornell):
    to_cologne = direct(ccat, cologne)
    relay(ccat, cologne, cornell, method=TransferMethod.RSYNC)
    built_bundle(ccat.buffer)

    plan_transfers(now=timezone.now())
    first = DataTransfer.objects.get()
    arrive(first)
    plan_transfers(now=timezone.now())

    assert (first.route, first.method) == (to_cologne, "bbcp")
    assert transfers() == [
        ("ccat:buffer", "cologne:buffer", "bbcp", 1),
        ("cologne:buffer", "cornell:buffer", "rsync", 2),
    ]


def test_routing_custom_route_wins_for_its_location(ccat, cologne):
    direct(ccat, cologne)
    express = f.DataLocationFactory(site=ccat.site, name="buffer-express", location_type=LocationType.BUFFER)
    custom(express, cologne.archive)
    built_bundle(express)
    built_bundle(ccat.buffer)

    plan_transfers(now=timezone.now())

    assert transfers() == [
        ("ccat:buffer", "cologne:buffer", "bbcp", 1),
        ("ccat:buffer-express", "cologne:archive", "rsync", 1),
    ]


def test_routing_disabled_route_creates_nothing_and_keeps_transfers(ccat, cologne, cornell):
    to_cologne = direct(ccat, cologne)
    direct(ccat, cornell)
    built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())
    DataTransferRouteQS = type(to_cologne).objects
    DataTransferRouteQS.filter(origin_site=ccat.site).update(active=False)
    later = built_bundle(ccat.buffer)

    result = plan_transfers(now=timezone.now())

    assert result.count == 0
    assert DataTransfer.objects.filter(transfer_package=later).count() == 0
    assert DataTransfer.objects.filter(status=JobStatus.PENDING).count() == 2


def test_routing_route_change_does_not_rewrite_history(ccat, cologne):
    route = direct(ccat, cologne)
    built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())
    route.method = TransferMethod.S3
    route.save()
    new_buffer = f.DataLocationFactory(site=cologne.site, name="buffer-new", location_type=LocationType.BUFFER,
                                       priority=10)

    plan_transfers(now=timezone.now())
    later = built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())

    old = DataTransfer.objects.exclude(transfer_package=later).get()
    new = DataTransfer.objects.get(transfer_package=later)
    assert (old.method, old.destination_location) == ("bbcp", cologne.buffer)
    assert (new.method, new.destination_location) == ("s3", new_buffer)


def test_routing_cancelled_transfer_is_not_recreated(ccat, cologne):
    direct(ccat, cologne)
    built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())
    job_cancel(job=DataTransfer.objects.get(), reason="operator")

    assert plan_transfers(now=timezone.now()).count == 0


def test_routing_twice_creates_nothing_twice(ccat, cologne, cornell):
    direct(ccat, cologne)
    relay(ccat, cologne, cornell)
    built_bundle(ccat.buffer)

    counts = [plan_transfers(now=timezone.now()).count for _ in range(2)]
    arrive(DataTransfer.objects.get())
    counts += [plan_transfers(now=timezone.now()).count for _ in range(2)]

    assert counts == [1, 0, 1, 0]
    assert DataTransfer.objects.count() == 2


@pytest.mark.parametrize("bundles", [1, 3, 10])
def test_routing_query_count_does_not_grow(ccat, cologne, cornell, bundles):
    direct(ccat, cologne)
    relay(ccat, cologne, cornell)
    for _ in range(bundles):
        arrive(DataTransfer.objects.create(
            transfer_package=built_bundle(ccat.buffer), origin_location=ccat.buffer,
            destination_location=cologne.buffer, method="bbcp",
        ))
    for _ in range(bundles):
        built_bundle(ccat.buffer)

    with CaptureQueriesContext(connection) as queries:
        result = plan_transfers(now=timezone.now())

    assert result.count == 2 * bundles
    assert len(queries) == 5


# --- unpacking ------------------------------------------------------------------------------------


def routed(ccat, *routes_args):
    built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())


def test_unpack_created_once_when_a_direct_transfer_arrived(ccat, cologne):
    direct(ccat, cologne)
    routed(ccat)
    transfer = arrive(DataTransfer.objects.get())

    counts = [plan_unpacks(now=timezone.now()).count for _ in range(2)]

    unpack = DataTransferUnpack.objects.get()
    assert counts == [1, 0]
    assert (unpack.transfer, unpack.status) == (transfer, JobStatus.PENDING)


def test_unpack_waits_for_the_transfer(ccat, cologne):
    direct(ccat, cologne)
    routed(ccat)

    assert plan_unpacks(now=timezone.now()).count == 0


def test_unpack_not_at_a_relay_stop_but_at_the_destination(ccat, cologne, cornell):
    relay(ccat, cologne, cornell)
    routed(ccat)
    first = arrive(DataTransfer.objects.get())

    at_relay = plan_unpacks(now=timezone.now()).count
    plan_transfers(now=timezone.now())
    second = arrive(DataTransfer.objects.get(hop=2))
    at_destination = plan_unpacks(now=timezone.now()).count

    assert (at_relay, at_destination) == (0, 1)
    assert DataTransferUnpack.objects.get().transfer == second
    assert not DataTransferUnpack.objects.filter(transfer=first).exists()


def test_unpack_at_a_relay_that_is_also_a_direct_destination(ccat, cologne, cornell):
    direct(ccat, cologne)
    relay(ccat, cologne, cornell)
    routed(ccat)
    first = arrive(DataTransfer.objects.get())

    plan_unpacks(now=timezone.now())

    assert DataTransferUnpack.objects.get().transfer == first


def test_unpack_custom_route_into_the_archive(ccat, cologne):
    express = f.DataLocationFactory(site=ccat.site, name="buffer-express", location_type=LocationType.BUFFER)
    custom(express, cologne.archive)
    built_bundle(express)
    plan_transfers(now=timezone.now())
    transfer = arrive(DataTransfer.objects.get())

    plan_unpacks(now=timezone.now())

    assert DataTransferUnpack.objects.get().transfer == transfer
    assert transfer.destination_location == cologne.archive


@pytest.mark.parametrize("arrived", [1, 3, 10])
def test_unpack_query_count_does_not_grow(ccat, cologne, arrived):
    direct(ccat, cologne)
    for _ in range(arrived):
        routed(ccat)
    for transfer in DataTransfer.objects.all():
        arrive(transfer)

    with CaptureQueriesContext(connection) as queries:
        result = plan_unpacks(now=timezone.now())

    assert result.count == arrived
    assert len(queries) == 2


def test_unpack_custom_data_relayed_through_the_custom_destination_site(ccat, cologne, cornell):
    direct(ccat, cologne)
    relay(ccat, cologne, cornell)
    express = f.DataLocationFactory(site=ccat.site, name="buffer-express", location_type=LocationType.BUFFER)
    custom(express, cologne.archive)
    built_bundle(express)
    plan_transfers(now=timezone.now())
    into_archive = arrive(DataTransfer.objects.get(destination_location=cologne.archive))
    relay_hop = arrive(DataTransfer.objects.get(destination_location=cologne.buffer))

    plan_transfers(now=timezone.now())
    plan_unpacks(now=timezone.now())
    last_hop = arrive(DataTransfer.objects.get(hop=2))
    plan_unpacks(now=timezone.now())

    assert (relay_hop.method, into_archive.method, last_hop.destination_location) == ("bbcp", "rsync",
                                                                                     cornell.buffer)
    assert set(DataTransferUnpack.objects.values_list("transfer_id", flat=True)) == {into_archive.pk, last_hop.pk}


def test_routing_disabled_relay_creates_no_next_hop(ccat, cologne, cornell):
    route = relay(ccat, cologne, cornell)
    built_bundle(ccat.buffer)
    plan_transfers(now=timezone.now())
    arrive(DataTransfer.objects.get())
    route.active = False
    route.save()

    result = plan_transfers(now=timezone.now())

    assert result.count == 0
    assert DataTransfer.objects.count() == 1


def test_routing_site_without_active_buffer_is_reported_and_skipped(ccat, cologne):
    direct(ccat, cologne)
    type(cologne.buffer).objects.filter(pk=cologne.buffer.pk).update(active=False)
    built_bundle(ccat.buffer)

    result = plan_transfers(now=timezone.now())

    assert result.count == 0
    assert any("no active buffer" in line for line in result.lines)
