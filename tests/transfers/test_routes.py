"""Route validation: every invalid route of DESIGN.md is refused with its message, by full_clean()
and on the operator's admin form, and valid routes pass."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import escape

from opsdb.choices import LocationType, TransferMethod
from tests import factories as f
from transfers.choices import RouteType
from transfers.models import DataTransferRoute

pytestmark = pytest.mark.django_db


@pytest.fixture
def topology():
    sites = {name: f.SiteFactory(name=name) for name in ("ccat", "cologne", "cornell")}
    locations = {
        "ccat:buffer": f.DataLocationFactory(site=sites["ccat"], name="buffer"),
        "cologne:archive": f.DataLocationFactory(
            site=sites["cologne"], name="archive", location_type=LocationType.LONG_TERM_ARCHIVE
        ),
        "cornell:archive": f.DataLocationFactory(
            site=sites["cornell"], name="archive", location_type=LocationType.LONG_TERM_ARCHIVE
        ),
    }
    return {**sites, **locations}


# name → (fields relative to ccat → cologne DIRECT bbcp, field, message); {x} are topology keys.
INVALID = {
    "origin-equals-destination": (
        {"destination_site": "ccat"}, "destination_site", "A route cannot end at the site where it starts."),
    "relay-equals-origin": (
        {"route_type": RouteType.RELAY, "relay_site": "ccat"}, "relay_site",
        "The relay site must differ from the origin and the destination."),
    "relay-equals-destination": (
        {"route_type": RouteType.RELAY, "relay_site": "cologne"}, "relay_site",
        "The relay site must differ from the origin and the destination."),
    "relay-missing": ({"route_type": RouteType.RELAY}, "relay_site", "A relay route needs a relay site."),
    "relay-on-direct": (
        {"relay_site": "cornell"}, "relay_site",
        "Only relay routes go through a relay site; clear it or make the route a relay."),
    "relay-on-custom": (
        {"route_type": RouteType.CUSTOM, "relay_site": "cornell", "origin_location": "ccat:buffer",
         "destination_location": "cologne:archive"}, "relay_site",
        "Only relay routes go through a relay site; clear it or make the route a relay."),
    "locations-on-direct": (
        {"origin_location": "ccat:buffer"}, "origin_location",
        "Only custom routes name locations; clear it or make the route custom."),
    "custom-without-origin-location": (
        {"route_type": RouteType.CUSTOM, "destination_location": "cologne:archive"}, "origin_location",
        "A custom route needs an origin location."),
    "custom-without-destination-location": (
        {"route_type": RouteType.CUSTOM, "origin_location": "ccat:buffer"}, "destination_location",
        "A custom route needs a destination location."),
    "location-not-at-destination-site": (
        {"route_type": RouteType.CUSTOM, "origin_location": "ccat:buffer",
         "destination_location": "cornell:archive"}, "destination_location",
        "cornell:archive is at site cornell, not at the route's destination site cologne."),
    "location-not-at-origin-site": (
        {"route_type": RouteType.CUSTOM, "origin_location": "cologne:archive",
         "destination_location": "cologne:archive"}, "origin_location",
        "cologne:archive is at site cologne, not at the route's origin site ccat."),
}


def route_from(topology, overrides: dict) -> DataTransferRoute:
    values = {"origin_site": "ccat", "destination_site": "cologne", "route_type": RouteType.DIRECT,
              "method": TransferMethod.BBCP, **overrides}
    resolved = {k: topology[v] if k.endswith(("_site", "_location")) else v for k, v in values.items()}
    return DataTransferRoute(**resolved)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_route_full_clean_refused_with_message(topology, name):
    overrides, field, message = INVALID[name]
    route = route_from(topology, overrides)

    with pytest.raises(ValidationError) as exc:
        route.full_clean()

    assert message in exc.value.message_dict[field]


def relay_cycle(topology) -> DataTransferRoute:
    """ccat → cologne via cornell exists; ccat → cornell via cologne would come back to ccat → cologne."""
    f.RouteFactory(origin_site=topology["ccat"], destination_site=topology["cologne"], route_type=RouteType.RELAY,
                   relay_site=topology["cornell"])
    return route_from(topology, {"destination_site": "cornell", "route_type": RouteType.RELAY,
                                 "relay_site": "cologne"})


def test_relay_cycle_full_clean_refused_with_message(topology):
    route = relay_cycle(topology)

    with pytest.raises(ValidationError) as exc:
        route.full_clean()

    [message] = exc.value.message_dict["relay_site"]
    assert message.startswith("This relay makes a cycle: routing ccat → ")
    assert "ccat → cornell" in message
    assert message.endswith("comes back to where it started.")


def test_inactive_relay_makes_no_cycle(topology):
    route = relay_cycle(topology)
    route.active = False

    route.full_clean()


@pytest.mark.parametrize("overrides", [
    {},
    {"destination_site": "cornell", "route_type": RouteType.RELAY, "relay_site": "cologne"},
    {"route_type": RouteType.CUSTOM, "origin_location": "ccat:buffer", "destination_location": "cologne:archive",
     "method": TransferMethod.RSYNC},
], ids=["direct", "relay", "custom"])
def test_valid_route_full_clean_passes(topology, overrides):
    route = route_from(topology, overrides)

    route.full_clean()
    route.save()

    assert DataTransferRoute.objects.get().pk == route.pk


def test_demo_topology_routes_validate_together(topology):
    for overrides in (
        {},
        {"destination_site": "cornell", "route_type": RouteType.RELAY, "relay_site": "cologne"},
        {"route_type": RouteType.CUSTOM, "origin_location": "ccat:buffer", "destination_location": "cologne:archive"},
    ):
        route = route_from(topology, overrides)
        route.full_clean()
        route.save()

    assert DataTransferRoute.objects.count() == 3


# --- the same refusals on the admin form ----------------------------------------------------

def form_data(topology, overrides: dict) -> dict:
    route = route_from(topology, overrides)
    return {
        "origin_site": route.origin_site_id, "destination_site": route.destination_site_id,
        "route_type": route.route_type, "method": route.method, "active": "on",
        "relay_site": route.relay_site_id or "", "origin_location": route.origin_location_id or "",
        "destination_location": route.destination_location_id or "", "max_concurrent": 4,
        "bundle_target_size": "", "bundle_max_wait": "",
    }


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


ADD_URL = "admin:transfers_datatransferroute_add"


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_route_admin_form_shows_message(operator_client, topology, name):
    overrides, field, message = INVALID[name]

    response = operator_client.post(reverse(ADD_URL), form_data(topology, overrides))

    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert escape(message) in response.content.decode()
    assert not DataTransferRoute.objects.exists()


def test_relay_cycle_admin_form_shows_message(operator_client, topology):
    relay_cycle(topology)
    data = form_data(topology, {"destination_site": "cornell", "route_type": RouteType.RELAY,
                                "relay_site": "cologne"})

    response = operator_client.post(reverse(ADD_URL), data)

    assert response.status_code == 200
    assert "This relay makes a cycle" in response.content.decode()
    assert DataTransferRoute.objects.count() == 1


def test_duplicate_site_level_route_admin_form_shows_message(operator_client, topology):
    f.RouteFactory(origin_site=topology["ccat"], destination_site=topology["cologne"])

    response = operator_client.post(reverse(ADD_URL), form_data(topology, {}))

    assert response.status_code == 200
    assert "There is already a route of this type between these sites" in response.content.decode()
    assert DataTransferRoute.objects.count() == 1


def test_valid_route_admin_form_saves(operator_client, topology):
    response = operator_client.post(reverse(ADD_URL), form_data(topology, {}))

    assert response.status_code == 302
    route = DataTransferRoute.objects.get()
    assert route.history.get().history_user.username == "operator"
