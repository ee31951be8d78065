"""Planning passes for transfers: bundling raw packages, routing bundles, starting unpacks.

Each pass is idempotent and set-based: it reads what exists with a fixed number of bulk queries,
decides in Python, and writes with bulk inserts, so its query count does not grow with the rows
it handles. Unique constraints back every "once" (a raw package is in one bundle; one transfer
per bundle and destination; one unpack per transfer).

Decisions (see also docs/scheduler.md):
- Bundling points: every active BUFFER location of a site with an active outgoing site-level
  route, and every active BUFFER location that is the origin of an active CUSTOM route. The
  target size and maximum wait are the smallest set on the routes that apply (a CUSTOM route's
  own settings for its origin location), else the global settings.
- Packing is first-fit decreasing. A bundle is sealed when it reached its target, when a
  waiting package did not fit into it (the pool overflows it: all bundles but the last one
  opened), or when one of its packages has waited at the buffer (copy ``created_at``) longer
  than the maximum wait. The last, partly filled bundle otherwise waits for more data.
- Routing: for data at a location, an active CUSTOM route from that location replaces the
  site-level route to its destination site. A pair of sites with both a DIRECT and a RELAY route
  sends its data by the DIRECT route; while that one is paused (and allows it), new bundles take
  the RELAY route if every hop of it is ACTIVE (``RouteOption``). Site-level routes are expanded into hops with
  ``transfers.routing.expand_route``; a hop lands at the destination site's active BUFFER of
  highest priority. Hop 1 needs the bundle's archive present at its origin; hop k+1 is created
  when hop k is TRANSFERRED, from where hop k landed, with ``previous`` set.
- Final stops: a transfer is unpacked where it lands when its route ends at that site (a
  DIRECT route, the last hop of a RELAY, a RELAY first hop shared with a DIRECT route to the
  relay site, a CUSTOM route) — or when its route was deleted. A relay stop that is not a
  destination of any route keeps the bundle packed and only forwards it; so does a site that a
  CUSTOM route serves for the bundle's location (the CUSTOM transfer delivers the data there).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import BooleanField, Case, Exists, F, OuterRef, Q, Value, When

from opsdb.choices import CopyStatus, JobStatus, LocationType, TransferMethod
from opsdb.models import RawDataPackage, RawDataPackageCopy
from opsdb.planning import Location, Locations, PassResult, counted, human_bytes, insert_int_rows, log, plural
from transfers.choices import RouteState, RouteType
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferPackageMember,
    DataTransferRoute,
    DataTransferUnpack,
)
from transfers.routing import RouteCycleError, expand_route, relay_fallbacks, site_level_routes_by_pair


@dataclass
class Topology(Locations):
    """Active routes and every location, read once per pass (two queries)."""

    routes: list[DataTransferRoute] = field(default_factory=list)

    @classmethod
    def load(cls) -> "Topology":
        return cls(locations=Locations.load().locations,
                   routes=list(DataTransferRoute.objects.active().order_by("pk")))

    @property
    def site_level(self) -> list[DataTransferRoute]:
        return [r for r in self.routes if r.route_type != RouteType.CUSTOM]

    @property
    def custom(self) -> list[DataTransferRoute]:
        return [r for r in self.routes if r.route_type == RouteType.CUSTOM]


# --- bundling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundlePolicy:
    target_size: int
    max_wait: timedelta

    @classmethod
    def for_routes(cls, routes: Iterable[DataTransferRoute]) -> "BundlePolicy":
        """The strictest settings of the routes a bundle will take, defaults where unset."""
        routes = list(routes)
        targets = [r.bundle_target_size for r in routes if r.bundle_target_size]
        waits = [r.bundle_max_wait for r in routes if r.bundle_max_wait is not None]
        return cls(
            target_size=min(targets, default=settings.BUNDLE_TARGET_SIZE_BYTES),
            max_wait=min(waits, default=timedelta(seconds=settings.BUNDLE_MAX_WAIT_SECONDS)),
        )


def bundle_policies(topology: Topology) -> dict[int, BundlePolicy]:
    """Bundling points (BUFFER location ids) and the policy each bundles with."""
    by_site: dict[int, list] = defaultdict(list)
    for route in topology.site_level:
        by_site[route.origin_site_id].append(route)
    by_location: dict[int, list] = defaultdict(list)
    for route in topology.custom:
        by_location[route.origin_location_id].append(route)
    policies = {}
    for loc in topology.locations.values():
        if loc.active and loc.location_type == LocationType.BUFFER:
            routes = by_location.get(loc.id) or by_site.get(loc.site_id)
            if routes:
                policies[loc.id] = BundlePolicy.for_routes(routes)
    return policies


class _Bins:
    """Bins of first-fit packing: a max-tree over their free room finds the first that fits in O(log n)."""

    CLOSED = -1  # unopened bins, and bins an oversized package overfilled

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.count = 0
        self._leaves = 1
        self._tree = [self.CLOSED, self.CLOSED]

    def place(self, size: int) -> int:
        """Index of the first bin with room for ``size`` (a new one if none fits); takes that room."""
        tree = self._tree
        if tree[1] >= size:
            i = 1
            while i < self._leaves:
                i = 2 * i if tree[2 * i] >= size else 2 * i + 1
            index = i - self._leaves
        else:
            index = self._open()
        self._set(index, self._tree[self._leaves + index] - size)
        return index

    def _open(self) -> int:
        if self.count == self._leaves:
            rooms = self._tree[self._leaves:]
            self._leaves *= 2
            self._tree = [self.CLOSED] * (2 * self._leaves)
            for i, room in enumerate(rooms):
                self._set(i, room)
        self.count += 1
        self._set(self.count - 1, self.capacity)
        return self.count - 1

    def _set(self, index: int, room: int) -> None:
        tree = self._tree
        i = self._leaves + index
        tree[i] = room if room >= 0 else self.CLOSED
        i //= 2
        while i:
            left, right = tree[2 * i], tree[2 * i + 1]
            tree[i] = left if left >= right else right
            i //= 2


def first_fit_decreasing(sizes: list[int], capacity: int) -> list[list[int]]:
    """Pack item indexes into bins of ``capacity`` bytes, largest first; an item is never split."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    bins = _Bins(capacity)
    packed: list[list[int]] = []
    for i in order:
        index = bins.place(sizes[i])
        if index == len(packed):
            packed.append([])
        packed[index].append(i)
    return packed


@dataclass(frozen=True, slots=True)
class Waiting:
    """A raw package waiting at a bundling point; ``aged``: it waited longer than the maximum."""

    raw_package_id: int
    size: int
    aged: bool


def seal(items: list[Waiting], policy: BundlePolicy) -> tuple[list[list[Waiting]], list[Waiting]]:
    """(sealed bundles, packages left waiting) for the packages at one bundling point."""
    bins = first_fit_decreasing([item.size for item in items], policy.target_size)
    sealed, waiting = [], []
    for k, indexes in enumerate(bins):
        members = [items[i] for i in indexes]
        full = sum(m.size for m in members) >= policy.target_size
        overflowed = k < len(bins) - 1  # a later package did not fit: nothing waiting can fill it
        aged = any(m.aged for m in members)
        (sealed.append(members) if full or overflowed or aged else waiting.extend(members))
    return sealed, waiting


def waiting_packages(policies: dict[int, BundlePolicy], topology: Topology,
                     now: datetime) -> dict[int, list[Waiting]]:
    """Unbundled raw packages PRESENT at the bundling points, each at one location (one query).

    Unpacked packages that arrived from elsewhere are members of the bundle they came in
    (membership is one-to-one), so they are never bundled again. Whether a package waited too
    long is decided in the database (a boolean loads much faster than a timestamp). The query
    starts from the packages not yet flagged ``bundled`` (a partial index), so it reads what
    waits, not the history of everything bundled before.
    """
    aged = Case(
        *[When(location_id=loc_id, created_at__lte=now - policy.max_wait, then=Value(True))
          for loc_id, policy in policies.items()],
        default=Value(False), output_field=BooleanField(),
    )
    rows = (
        RawDataPackageCopy.objects.filter(status=CopyStatus.PRESENT, location_id__in=list(policies))
        .filter(raw_package__bundled=False, raw_package__bundle_membership__isnull=True)
        .annotate(aged=aged)
        .values_list("raw_package_id", "location_id", "raw_package__size", "aged")
        .iterator(chunk_size=50000)
    )
    chosen: dict[int, Waiting] = {}
    where: dict[int, int] = {}
    for raw_id, loc_id, size, is_aged in rows:
        # A package present at two bundling points goes with the higher-priority location.
        if raw_id not in where or _rank(topology, loc_id) < _rank(topology, where[raw_id]):
            chosen[raw_id] = Waiting(raw_id, size, is_aged)
            where[raw_id] = loc_id
    by_location: dict[int, list[Waiting]] = defaultdict(list)
    for raw_id, item in chosen.items():
        by_location[where[raw_id]].append(item)
    return by_location


def _rank(topology: Topology, location_id: int) -> tuple[int, int]:
    return (-topology.locations[location_id].priority, location_id)


def plan_bundles(*, now: datetime) -> PassResult:
    """Bundle the raw packages waiting at buffers into new transfer packages (``package`` jobs)."""
    result = PassResult("bundling")
    topology = Topology.load()
    policies = bundle_policies(topology)
    if not policies:
        return result
    planned: list[tuple[int, list[Waiting], BundlePolicy]] = []
    for loc_id, items in sorted(waiting_packages(policies, topology, now).items()):
        sealed, waiting = seal(items, policies[loc_id])
        planned.extend((loc_id, members, policies[loc_id]) for members in sealed)
        _say_bundling(result, topology.locations[loc_id], sealed, waiting, policies[loc_id])
    if planned:
        _create_bundles(planned, topology, now)
    mark_bundled()
    result.count = len(planned)
    return result


def mark_bundled() -> int:
    """Flag the packages that have a membership and are not flagged yet (new bundles, or made elsewhere)."""
    return RawDataPackage.objects.filter(bundled=False, bundle_membership__isnull=False).update(bundled=True)


def _create_bundles(planned: list[tuple[int, list[Waiting], BundlePolicy]], topology: Topology,
                    now: datetime) -> None:
    stamp = now.strftime("%Y%m%d%H%M%S")
    # Names must stay unique when two passes run within the same second.
    offset = DataTransferPackage.objects.filter(name__contains=f"-{stamp}-").count()
    bundles = []
    for n, (loc_id, members, policy) in enumerate(planned, start=offset + 1):
        name = f"dtp-{topology.locations[loc_id].site_name}-{stamp}-{n}.tar"
        bundles.append(DataTransferPackage(
            name=name, origin_location_id=loc_id, archive_path=f"bundles/{name}", created_at=now,
            payload_size=sum(m.size for m in members), target_size=policy.target_size,
        ))
    DataTransferPackage.objects.bulk_create(bundles)
    member_table = DataTransferPackageMember._meta.db_table
    rows = [(bundle.pk, m.raw_package_id) for bundle, (_, members, _) in zip(bundles, planned, strict=True)
            for m in members]
    insert_int_rows(member_table, ["transfer_package_id", "raw_package_id"], rows)


def _say_bundling(result: PassResult, location: Location, sealed: list[list[Waiting]], waiting: list[Waiting],
                  policy: BundlePolicy) -> None:
    parts = []
    if sealed:
        count = sum(len(m) for m in sealed)
        size = sum(x.size for m in sealed for x in m)
        parts.append(f"{plural(len(sealed), 'bundle')} ({human_bytes(size)}) from {plural(count, 'package')} "
                     f"at {location.label}")
    if waiting:
        parts.append(
            f"{plural(len(waiting), 'package')} ({human_bytes(sum(w.size for w in waiting))}) wait at "
            f"{location.label} "
            f"for more data (target {human_bytes(policy.target_size)}, "
            f"max wait {int(policy.max_wait.total_seconds())} s)"
        )
    if parts:
        result.say("; ".join(parts))


# --- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedHop:
    destination_location_id: int
    destination_site_id: int
    route: DataTransferRoute

    @property
    def custom(self) -> bool:
        return self.route.route_type == RouteType.CUSTOM


@dataclass(frozen=True)
class RouteOption:
    """How a bundle reaches one destination: the route's path, and a relay fallback if it has one.

    ``use_fallback``: the DIRECT route is paused, allows it, and the relay path is healthy (every
    hop's route ACTIVE), so new bundles take the relay. A bundle that already has a transfer on the
    relay route keeps to the relay; one that already has a transfer to the destination (held on the
    paused route) keeps to it: transfers are held, never moved.
    """

    path: list[PlannedHop]
    fallback: list[PlannedHop] | None = None
    use_fallback: bool = False

    def path_for(self, known: dict[int, "Existing"], topology: Topology) -> tuple[list[PlannedHop], bool]:
        """(the path this bundle follows, whether it is the fallback)."""
        if not self.fallback:
            return self.path, False
        relay_id = self.fallback[-1].route.pk
        if any(e.route_id == relay_id and e.status != JobStatus.CANCELLED for e in known.values()):
            return self.fallback, True
        if self.use_fallback and _already_sent(self.path[-1], known, topology) is None:
            return self.fallback, True
        return self.path, False


class RoutePlanner:
    """The hop sequences a bundle built at a location takes, per the active routes."""

    def __init__(self, topology: Topology, result: PassResult):
        self.topology = topology
        self.result = result
        self.by_pair = site_level_routes_by_pair(topology.site_level)
        self.fallbacks = relay_fallbacks(topology.site_level)
        self._paths: dict[int, list[RouteOption]] = {}

    def paths_from(self, location_id: int) -> list[RouteOption]:
        if location_id not in self._paths:
            self._paths[location_id] = self._compute(location_id)
        return self._paths[location_id]

    def _compute(self, location_id: int) -> list[RouteOption]:
        origin = self.topology.locations[location_id]
        custom = [r for r in self.topology.custom if r.origin_location_id == location_id]
        options = [RouteOption([PlannedHop(r.destination_location_id, r.destination_site_id, r)]) for r in custom]
        overridden = {r.destination_site_id for r in custom}
        for route in self.topology.site_level:
            if self.by_pair.get((route.origin_site_id, route.destination_site_id)) is not route:
                continue  # a pair's fallback RELAY route: considered with its DIRECT route
            if route.origin_site_id == origin.site_id and route.destination_site_id not in overridden:
                path = self._expand(route)
                if path:
                    options.append(self._with_fallback(route, path))
        return options

    def _with_fallback(self, route: DataTransferRoute, path: list[PlannedHop]) -> RouteOption:
        relay = self.fallbacks.get((route.origin_site_id, route.destination_site_id))
        if relay is None or not route.allow_relay_fallback:
            return RouteOption(path)
        fallback = self._expand(relay)
        if not fallback or fallback[-1].destination_site_id != route.destination_site_id:
            return RouteOption(path)
        healthy = all(hop.route.state == RouteState.ACTIVE for hop in fallback)
        return RouteOption(path, fallback, use_fallback=route.is_paused and healthy)

    def _expand(self, route: DataTransferRoute) -> list[PlannedHop]:
        try:
            hops = expand_route(route, self.by_pair)
        except RouteCycleError as exc:
            self.result.say(f"route #{route.pk} skipped: relay cycle {exc.pairs}")
            return []
        path = []
        for hop in hops:
            buffer = self.topology.best_location(hop.destination_site_id, LocationType.BUFFER)
            if buffer is None:
                site = self.topology.site_name(hop.destination_site_id)
                self.result.say(f"route #{route.pk} cannot reach {site}: it has no active buffer")
                break
            path.append(PlannedHop(buffer.id, hop.destination_site_id, hop.route))
        return path


@dataclass(frozen=True)
class Existing:
    pk: int
    destination_location_id: int
    status: str
    route_id: int | None = None


def plan_transfers(*, now: datetime) -> PassResult:
    """One transfer per destination and hop for every built bundle the active routes reach."""
    result = PassResult("routing")
    topology = Topology.load()
    if not topology.routes:
        return result  # disabled routes create nothing, not even next hops
    planner = RoutePlanner(topology, result)
    origins, present = _routable_bundles()
    existing = _existing_transfers()
    new: list[DataTransfer] = []
    fallback_routes: set[DataTransferRoute] = set()
    for bundle_id, origin_id in sorted(origins.items()):
        known = existing.get(bundle_id, {})
        for option in planner.paths_from(origin_id):
            path, is_fallback = option.path_for(known, topology)
            transfer = _next_transfer(bundle_id, origin_id, path, known, present, topology)
            if transfer is not None:
                transfer.created_at = now
                known[transfer.destination_location_id] = Existing(0, transfer.destination_location_id,
                                                                   JobStatus.PENDING, transfer.route.pk)
                new.append(transfer)
                if is_fallback:
                    fallback_routes.add(option.path[0].route)
    for route in sorted(fallback_routes, key=lambda r: r.pk):
        result.say(f"route #{route.pk} ({topology.site_name(route.origin_site_id)} → "
                   f"{topology.site_name(route.destination_site_id)}) is paused: new bundles take its relay route")
    if new:
        # The partial unique constraint makes a concurrent duplicate a no-op, not an error.
        DataTransfer.objects.bulk_create(new, ignore_conflicts=True)
        result.say(f"{plural(len(new), 'transfer')}: " + counted(
            f"{topology.label(t.origin_location_id)} → {topology.label(t.destination_location_id)} "
            f"({t.method}, hop {t.hop})" for t in new
        ))
    result.count = len(new)
    return result


def _routable_bundles() -> tuple[dict[int, int], set[tuple[int, int]]]:
    """Built bundles whose archive is still present at a buffer: {bundle: origin}, {(bundle, location)}."""
    rows = DataTransferPackageCopy.objects.filter(
        status=CopyStatus.PRESENT, transfer_package__status=JobStatus.COMPLETED,
        location__location_type=LocationType.BUFFER,
    ).values_list("transfer_package_id", "location_id", "transfer_package__origin_location_id")
    origins, present = {}, set()
    for bundle_id, location_id, origin_id in rows:
        origins[bundle_id] = origin_id
        present.add((bundle_id, location_id))
    return origins, present


def _existing_transfers() -> dict[int, dict[int, Existing]]:
    """Every transfer of the routable bundles, by bundle and destination (cancelled ones count: not redone)."""
    bundles = DataTransferPackageCopy.objects.filter(
        status=CopyStatus.PRESENT, transfer_package__status=JobStatus.COMPLETED,
        location__location_type=LocationType.BUFFER,
    ).values("transfer_package_id")
    rows = DataTransfer.objects.filter(transfer_package_id__in=bundles, repair_of__isnull=True).values_list(
        "pk", "transfer_package_id", "destination_location_id", "status", "route_id"
    ).order_by("pk")
    existing: dict[int, dict[int, Existing]] = defaultdict(dict)
    for pk, bundle_id, destination_id, status, route_id in rows:
        current = existing[bundle_id].get(destination_id)
        if current is None or current.status == JobStatus.CANCELLED:
            existing[bundle_id][destination_id] = Existing(pk, destination_id, status, route_id)
    return existing


def _already_sent(hop: PlannedHop, known: dict[int, Existing], topology: Topology) -> Existing | None:
    """The bundle's transfer that already serves this hop, if any.

    A CUSTOM hop is served by a transfer to its exact location; a site-level hop by a transfer
    to any buffer of its site — so a change of the site's preferred buffer does not send a
    bundle there a second time.
    """
    if hop.custom:
        return known.get(hop.destination_location_id)
    found = [
        e for loc_id, e in known.items()
        if topology.locations[loc_id].site_id == hop.destination_site_id
        and topology.locations[loc_id].location_type == LocationType.BUFFER
    ]
    return min(found, key=lambda e: (e.status != JobStatus.TRANSFERRED, e.status == JobStatus.CANCELLED),
               default=None)


def _next_transfer(bundle_id: int, origin_id: int, path: list[PlannedHop], known: dict[int, Existing],
                   present: set[tuple[int, int]], topology: Topology) -> DataTransfer | None:
    """The first missing hop of ``path`` that can start now, or None."""
    previous: Existing | None = None
    for number, hop in enumerate(path, start=1):
        done = _already_sent(hop, known, topology)
        if done is not None:
            if done.status != JobStatus.TRANSFERRED or done.pk == 0:
                return None  # still on its way (or cancelled): the next hop waits
            previous = done
            continue
        source = previous.destination_location_id if previous else origin_id
        if previous is None and (bundle_id, origin_id) not in present:
            return None
        if source == hop.destination_location_id:
            return None
        return DataTransfer(
            transfer_package_id=bundle_id, route=hop.route, origin_location_id=source,
            destination_location_id=hop.destination_location_id, method=hop.route.method, hop=number,
            previous_id=previous.pk if previous else None,
        )
    return None


# --- unpacking ----------------------------------------------------------------------------------


def final_stop_filter() -> Q:
    """Transfers whose destination is where their route ends (see the module docstring).

    A site-level hop into a site that an active CUSTOM route serves for the bundle's location is
    only a relay stop for that bundle: the CUSTOM route delivers its copy there.
    """
    served_by_custom = DataTransferRoute.objects.filter(
        active=True, route_type=RouteType.CUSTOM,
        origin_location_id=OuterRef("transfer_package__origin_location_id"),
        destination_site_id=OuterRef("destination_location__site_id"),
    )
    return (
        Q(route__isnull=True)
        | Q(route__route_type=RouteType.CUSTOM)
        | (Q(route__destination_site_id=F("destination_location__site_id")) & ~Exists(served_by_custom))
    )


def plan_unpacks(*, now: datetime) -> PassResult:
    """An unpack job for every transfer that arrived at a final stop and has none yet."""
    result = PassResult("unpacking")
    arrived = list(
        DataTransfer.objects.filter(status=JobStatus.TRANSFERRED, unpack__isnull=True, repair_of__isnull=True)
        .filter(final_stop_filter())
        .values_list("pk", "destination_location__site__name", "destination_location__name")
    )
    if arrived:
        DataTransferUnpack.objects.bulk_create(
            [DataTransferUnpack(transfer_id=pk, created_at=now) for pk, _, _ in arrived], ignore_conflicts=True
        )
        result.say(f"{plural(len(arrived), 'unpack job')}: " + counted(f"{site}:{loc}" for _, site, loc in arrived))
    result.count = len(arrived)
    log.debug("unpacking: %d transfers checked", len(arrived))
    return result


# --- repairs ------------------------------------------------------------------------------------


def plan_bundle_repairs(*, now: datetime) -> PassResult:
    """A repair transfer for every bundle copy found corrupt (MISMATCH) that has no repair under way.

    Its source is a verified PRESENT copy of the bundle: first the location the copy came from (the
    transfer that brought it, with that transfer's route and method), else one at a site with an
    active DIRECT route to the copy's site (by that route), else one at the same site (``copy``).
    A copy with no such source stays MISMATCH and is listed under Needs attention. A repair lands
    where the bad copy is; its completion restores the copy (``record_copies``) and the jobs that
    read it go on. Four queries, whatever the number of copies.
    """
    result = PassResult("bundle repairs")
    open_repair = DataTransfer.objects.filter(
        repair_of=OuterRef("pk"), status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED))
    bad = list(DataTransferPackageCopy.objects.filter(status=CopyStatus.MISMATCH).exclude(Exists(open_repair))
               .values_list("pk", "transfer_package_id", "location_id").order_by("pk"))
    if not bad:
        return result
    bundles = {bundle for _, bundle, _ in bad}
    good: dict[int, list[int]] = defaultdict(list)
    for bundle, location in (DataTransferPackageCopy.objects.verified().filter(transfer_package_id__in=bundles)
                             .values_list("transfer_package_id", "location_id").order_by("location_id")):
        good[bundle].append(location)
    came_from = {
        (t.transfer_package_id, t.destination_location_id): t
        for t in DataTransfer.objects.filter(transfer_package_id__in=bundles, repair_of__isnull=True,
                                             status=JobStatus.TRANSFERRED).select_related("route").order_by("pk")
    }
    topology = Topology.load()
    by_pair = site_level_routes_by_pair(topology.site_level)
    new, stuck = [], []
    for copy_id, bundle, location in bad:
        repair = _repair_of(copy_id, bundle, location, good[bundle], came_from, by_pair, topology)
        if repair is None:
            stuck.append(location)
            continue
        repair.created_at = now
        new.append(repair)
    if new:
        DataTransfer.objects.bulk_create(new, ignore_conflicts=True)  # one open repair per copy: a duplicate is a no-op
        result.say(f"{plural(len(new), 'repair transfer')} of corrupt bundle copies: " + counted(
            f"{topology.label(t.origin_location_id)} → {topology.label(t.destination_location_id)}" for t in new))
    if stuck:
        result.say(f"{len(stuck)} corrupt bundle cop{'y' if len(stuck) == 1 else 'ies'} with no good copy to fetch "
                   "from: " + counted(topology.label(loc) for loc in stuck))
    result.count = len(new)
    return result


def _repair_of(copy_id: int, bundle: int, location: int, good: list[int],
               came_from: dict[tuple[int, int], DataTransfer], by_pair: dict,
               topology: Topology) -> DataTransfer | None:
    """The transfer that brings a good copy of ``bundle`` to ``location`` in place of copy ``copy_id``, or None."""
    sources = [g for g in good if g != location and topology.locations[g].active]
    original = came_from.get((bundle, location))
    fields = {"transfer_package_id": bundle, "destination_location_id": location, "repair_of_id": copy_id}
    if original is not None and original.origin_location_id in sources:
        return DataTransfer(**fields, origin_location_id=original.origin_location_id, route=original.route,
                            method=original.method, hop=original.hop, previous_id=original.previous_id)
    site = topology.locations[location].site_id
    for source in sources:
        route = by_pair.get((topology.locations[source].site_id, site))
        if route is not None and route.route_type == RouteType.DIRECT:
            return DataTransfer(**fields, origin_location_id=source, route=route, method=route.method)
    for source in sources:
        if topology.locations[source].site_id == site:
            return DataTransfer(**fields, origin_location_id=source, route=None, method=TransferMethod.COPY)
    return None
