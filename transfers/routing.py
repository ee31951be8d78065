"""Route validation and expansion of site-level routes into hops.

A DIRECT route is one hop. A RELAY route from A to C via B is the legs A→B and B→C; each leg
follows the active site-level route for that pair when there is one (so a relay shares its first
hop with a DIRECT route to the relay site), and is otherwise a direct hop with the relay route's
own method. A leg that comes back to a pair already being expanded is a relay cycle.

A pair of sites may have one DIRECT and one RELAY route: the DIRECT route carries the pair's data
(and is the one relay legs follow); the RELAY route is its fallback while it is paused.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from transfers.choices import RouteType


class RouteCycleError(ValueError):
    def __init__(self, pairs: list[tuple[int, int]]):
        self.pairs = pairs
        super().__init__(f"relay cycle through {pairs}")


@dataclass(frozen=True)
class Hop:
    origin_site_id: int
    destination_site_id: int
    route: object  # the DataTransferRoute whose method this hop uses


def expand_route(route, routes_by_pair: Mapping[tuple[int, int], object]) -> list[Hop]:
    """The hops of a site-level route; raises RouteCycleError when relays loop."""
    return _expand(route, routes_by_pair, ((route.origin_site_id, route.destination_site_id),))


def _expand(route, routes_by_pair, stack) -> list[Hop]:
    if route.route_type != RouteType.RELAY:
        return [Hop(route.origin_site_id, route.destination_site_id, route)]
    legs = ((route.origin_site_id, route.relay_site_id), (route.relay_site_id, route.destination_site_id))
    hops: list[Hop] = []
    for pair in legs:
        if pair in stack:
            raise RouteCycleError([*stack, pair])
        leg_route = routes_by_pair.get(pair)
        if leg_route is None:
            hops.append(Hop(pair[0], pair[1], route))
        else:
            hops.extend(_expand(leg_route, routes_by_pair, (*stack, pair)))
    return hops


def site_level_routes_by_pair(routes: Iterable) -> dict[tuple[int, int], object]:
    """The route that carries each pair's data: the DIRECT one when a pair also has a (fallback) RELAY."""
    by_pair: dict[tuple[int, int], object] = {}
    for r in routes:
        pair = (r.origin_site_id, r.destination_site_id)
        if r.route_type != RouteType.CUSTOM and (pair not in by_pair or r.route_type == RouteType.DIRECT):
            by_pair[pair] = r
    return by_pair


def relay_fallbacks(routes: Iterable) -> dict[tuple[int, int], object]:
    """Per pair of sites that has both, the RELAY route that stands in while the DIRECT route is paused."""
    routes = list(routes)
    direct = {(r.origin_site_id, r.destination_site_id) for r in routes if r.route_type == RouteType.DIRECT}
    return {(r.origin_site_id, r.destination_site_id): r for r in routes
            if r.route_type == RouteType.RELAY and (r.origin_site_id, r.destination_site_id) in direct}


def validate_route(route) -> None:
    """Raise ValidationError (per field) for the routes DESIGN.md calls invalid."""
    errors = _field_errors(route)
    if errors:
        raise ValidationError(errors)
    _check_cycles(route)


def _field_errors(route) -> dict[str, str]:
    errors: dict[str, str] = {}
    origin, destination, relay = route.origin_site_id, route.destination_site_id, route.relay_site_id
    if origin and destination and origin == destination:
        errors["destination_site"] = "A route cannot end at the site where it starts."
    if route.route_type == RouteType.RELAY:
        if not relay:
            errors["relay_site"] = "A relay route needs a relay site."
        elif relay in (origin, destination):
            errors["relay_site"] = "The relay site must differ from the origin and the destination."
    elif relay:
        errors["relay_site"] = "Only relay routes go through a relay site; clear it or make the route a relay."
    if route.route_type == RouteType.CUSTOM:
        errors.update(_custom_location_errors(route))
    else:
        for field in ("origin_location", "destination_location"):
            if getattr(route, f"{field}_id"):
                errors[field] = "Only custom routes name locations; clear it or make the route custom."
    return errors


def _custom_location_errors(route) -> dict[str, str]:
    errors: dict[str, str] = {}
    for field, site_field, label, article in (
        ("origin_location", "origin_site", "origin", "an"),
        ("destination_location", "destination_site", "destination", "a"),
    ):
        location = getattr(route, field)
        site_id = getattr(route, f"{site_field}_id")
        if location is None:
            errors[field] = f"A custom route needs {article} {label} location."
        elif site_id and location.site_id != site_id:
            site = getattr(route, site_field)
            errors[field] = f"{location} is at site {location.site}, not at the route's {label} site {site}."
    return errors


def _check_cycles(route) -> None:
    if route.route_type == RouteType.CUSTOM:
        return
    # The route's own model class: this module imports nothing above the models (which import it).
    others = type(route).objects.active().site_level().exclude(pk=route.pk)
    routes = list(others.select_related("origin_site", "destination_site", "relay_site"))
    if route.active:
        routes.append(route)
    by_pair = site_level_routes_by_pair(routes)
    names = _site_names(routes)
    for candidate in routes:
        try:
            expand_route(candidate, by_pair)
        except RouteCycleError as exc:
            loop = ", ".join(f"{names.get(a, a)} → {names.get(b, b)}" for a, b in exc.pairs)
            raise ValidationError(
                {"relay_site": f"This relay makes a cycle: routing {loop} comes back to where it started."}
            ) from None


def _site_names(routes) -> dict[int, str]:
    names: dict[int, str] = {}
    for r in routes:
        for field in ("origin_site", "destination_site", "relay_site"):
            site_id = getattr(r, f"{field}_id")
            if site_id and site_id not in names:
                names[site_id] = getattr(r, field).name
    return names
