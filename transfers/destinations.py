"""Which long-term archives a raw package must reach: the archives of the sites its routes deliver it to.

A package is registered at a location (a buffer, a source, or for data products a processing
area). From that site the active routes carry it on: a DIRECT or RELAY route to its destination
site, a CUSTOM route from a location of the site to its destination location's site; a site
reached forwards it again by its own routes (its buffer copy is bundled anew). Every site reached
this way, the first one included, that has an active long-term archive must hold a verified copy
there (every such site archives what lands in its buffer: ``staging.planning``). A relay stop that
only forwards the bundle keeps no raw copy, so its archive is not required. Paused routes count
(their transfers are held, not cancelled); routes an operator made inactive do not.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping

from opsdb.choices import LocationType
from opsdb.planning import Locations
from transfers.choices import RouteState, RouteType
from transfers.models import DataTransferRoute


def required_archive_sites(locations_by_package: Mapping[int, Iterable[int]]) -> dict[int, set[int]]:
    """Per package id, given the location ids of its copies: the ids of the sites whose archive it must reach.

    Two queries (locations, routes) for any number of packages; packages that start from the same
    sites share the walk.
    """
    topology = Locations.load()
    next_sites = _next_sites(topology)
    archive_sites = {loc.site_id for loc in topology.locations.values()
                     if loc.active and loc.location_type == LocationType.LONG_TERM_ARCHIVE}
    walks: dict[frozenset[int], set[int]] = {}
    required = {}
    for package_id, location_ids in locations_by_package.items():
        start = frozenset(
            topology.locations[pk].site_id for pk in location_ids
            if pk in topology.locations and topology.locations[pk].location_type != LocationType.LONG_TERM_ARCHIVE
        )
        if start not in walks:
            walks[start] = _reached(start, next_sites) & archive_sites
        required[package_id] = walks[start]
    return required


def _next_sites(topology: Locations) -> dict[int, set[int]]:
    """Site id → the sites its active routes deliver raw data to (relay stops excluded)."""
    site_of = {loc.id: loc.site_id for loc in topology.locations.values()}
    found: dict[int, set[int]] = defaultdict(set)
    routes = DataTransferRoute.objects.active().values_list(
        "route_type", "origin_site_id", "destination_site_id", "destination_location_id"
    )
    for route_type, origin, destination, destination_location in routes:
        if route_type == RouteType.CUSTOM and destination_location in site_of:
            destination = site_of[destination_location]
        found[origin].add(destination)
    return found


def _reached(start: Iterable[int], next_sites: Mapping[int, set[int]]) -> set[int]:
    reached, todo = set(start), list(start)
    while todo:
        for site in next_sites.get(todo.pop(), ()):
            if site not in reached:
                reached.add(site)
                todo.append(site)
    return reached


def site_route_methods() -> dict[tuple[int, int], str]:
    """(origin site id, destination site id) → the method of the active, unpaused site-level route between them.

    What a repair of an archive copy from another site's archive moves by (``staging.fixity``): the
    DIRECT route of a pair when it has one, else its RELAY route's own method. One query.
    """
    methods: dict[tuple[int, int], str] = {}
    routes = (DataTransferRoute.objects.active().site_level().filter(state=RouteState.ACTIVE)
              .order_by("route_type").values_list("origin_site_id", "destination_site_id", "route_type", "method"))
    for origin, destination, route_type, method in routes:
        if (origin, destination) not in methods or route_type == RouteType.DIRECT:
            methods[(origin, destination)] = method
    return methods
