"""Relay fallback: while a DIRECT route is paused, new bundles take a healthy RELAY route between the same sites."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from opsdb.choices import JobStatus, TransferMethod
from tests import factories as f
from tests.topology import arrive, build, direct, relay, site
from transfers.models import DataTransfer, DataTransferRoute, DataTransferUnpack
from transfers.planning import plan_transfers, plan_unpacks
from transfers.services import route_pause, route_resume

pytestmark = pytest.mark.django_db


@pytest.fixture
def sites():
    return site("ccat", archive=False), site("cologne"), site("cornell")


def bundle_at(location):
    return build(f.DataTransferPackageFactory(origin_location=location, payload_size=1))


def legs() -> list[tuple[str, str, int, str]]:
    return sorted(
        (str(t.origin_location), str(t.destination_location), t.hop, t.status)
        for t in DataTransfer.objects.select_related("origin_location__site", "destination_location__site")
    )


def pause(route):
    return route_pause(route=route, reason="link down", by=f.operator())


def test_a_pair_may_have_one_direct_and_one_relay_route_but_not_two_of_a_kind(sites):
    ccat, cologne, cornell = sites
    direct(ccat, cornell)
    relay(ccat, cologne, cornell)
    second = DataTransferRoute(origin_site=ccat.site, destination_site=cornell.site, method=TransferMethod.BBCP)

    with pytest.raises(ValidationError) as exc:
        second.full_clean()

    assert "There is already a route of this type between these sites" in str(exc.value)


def test_direct_route_carries_the_data_while_active(sites):
    ccat, cologne, cornell = sites
    direct(ccat, cornell)
    relay(ccat, cologne, cornell, method=TransferMethod.RSYNC)
    bundle_at(ccat.buffer)

    plan_transfers(now=timezone.now())

    assert legs() == [("ccat:buffer", "cornell:buffer", 1, JobStatus.PENDING)]


def test_new_bundles_take_the_relay_while_the_direct_route_is_paused(sites):
    ccat, cologne, cornell = sites
    to_cornell = direct(ccat, cornell)
    fallback = relay(ccat, cologne, cornell, method=TransferMethod.RSYNC)
    held = bundle_at(ccat.buffer)
    plan_transfers(now=timezone.now())
    pause(to_cornell)
    new = bundle_at(ccat.buffer)

    result = plan_transfers(now=timezone.now())
    first = DataTransfer.objects.get(transfer_package=new)
    arrive(first)
    plan_transfers(now=timezone.now())
    second = DataTransfer.objects.get(transfer_package=new, hop=2)
    arrive(second)
    plan_unpacks(now=timezone.now())

    assert DataTransfer.objects.get(transfer_package=held).route == to_cornell  # held, never moved
    assert (first.route, str(first.destination_location)) == (fallback, "cologne:buffer")
    assert (second.route, str(second.destination_location)) == (fallback, "cornell:buffer")
    assert list(DataTransferUnpack.objects.values_list("transfer_id", flat=True)) == [second.pk]
    assert any("is paused: new bundles take its relay route" in line for line in result.lines)


def test_operator_can_forbid_the_fallback(sites):
    ccat, cologne, cornell = sites
    to_cornell = direct(ccat, cornell, allow_relay_fallback=False)
    relay(ccat, cologne, cornell)
    pause(to_cornell)
    bundle_at(ccat.buffer)

    plan_transfers(now=timezone.now())

    assert legs() == [("ccat:buffer", "cornell:buffer", 1, JobStatus.PENDING)]


def test_no_fallback_when_a_hop_of_the_relay_is_paused_too(sites):
    ccat, cologne, cornell = sites
    to_cornell = direct(ccat, cornell)
    to_cologne = direct(ccat, cologne)
    relay(ccat, cologne, cornell)
    pause(to_cornell)
    pause(to_cologne)  # the relay's first hop follows this route
    bundle_at(ccat.buffer)

    plan_transfers(now=timezone.now())

    assert legs() == [("ccat:buffer", "cologne:buffer", 1, JobStatus.PENDING),
                      ("ccat:buffer", "cornell:buffer", 1, JobStatus.PENDING)]


def test_a_bundle_on_the_relay_stays_on_it_when_the_direct_route_resumes(sites):
    ccat, cologne, cornell = sites
    to_cornell = direct(ccat, cornell)
    relay(ccat, cologne, cornell)
    pause(to_cornell)
    bundle = bundle_at(ccat.buffer)
    plan_transfers(now=timezone.now())
    route_resume(route=to_cornell, reason="link back", by=f.operator())

    arrive(DataTransfer.objects.get(transfer_package=bundle))
    plan_transfers(now=timezone.now())

    assert legs() == [("ccat:buffer", "cologne:buffer", 1, JobStatus.TRANSFERRED),
                      ("cologne:buffer", "cornell:buffer", 2, JobStatus.PENDING)]
