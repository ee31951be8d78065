"""Why data waits, in what only transfers know: routes (paused, at their limit), relay hops, bundles.

``explain_transfers`` is called through ``TransferHandler.explain`` by ``opsdb.explain.explain_jobs``
for a list of transfers; transfers it says nothing about get the shared explanations (backoff,
waiting for a worker, running, done). ``explain_raw_packages`` says why raw packages at a buffer
are in no bundle yet (``settings.RAW_PACKAGE_EXPLAINER``). Both cost a fixed number of queries for
a whole list.
"""

from collections.abc import Sequence
from datetime import datetime

from django.db.models import Count, Exists, Min, OuterRef, Sum

from opsdb.choices import CopyStatus, JobStatus
from opsdb.explanation import Explanation, ExplanationCode, clock, human_bytes, quoted_error, waiting_since
from opsdb.models import RawDataPackage, RawDataPackageCopy
from transfers.choices import RouteState, RouteType
from transfers.models import DataTransfer, DataTransferPackageCopy, DataTransferRoute
from transfers.planning import Topology, bundle_policies

ROUTE_RELATED = ("origin_site", "destination_site", "relay_site", "origin_location__site",
                 "destination_location__site")


def explain_transfers(transfers: Sequence[DataTransfer], now: datetime) -> dict[int, Explanation]:
    """Explanations of held pending transfers and of transfers waiting at a relay, by transfer id."""
    found = _held(transfers, now)
    found.update(_at_relay([t for t in transfers if t.status == JobStatus.TRANSFERRED], now))
    found.update(explain_corrupt_sources(
        {t.pk: (t.transfer_package_id, t.origin_location_id) for t in transfers
         if t.status == JobStatus.PENDING and t.attempts}, now))
    return found


def explain_corrupt_sources(readers: dict[int, tuple[int, int]], now: datetime) -> dict[int, Explanation]:
    """Pending jobs held because the bundle copy they read ({job id: (bundle, location)}) was found corrupt.

    Only jobs that failed an attempt can be held so; two queries for the whole list (none without such jobs).
    """
    if not readers:
        return {}
    copies = {
        (c.transfer_package_id, c.location_id): c for c in DataTransferPackageCopy.objects.filter(
            transfer_package_id__in={b for b, _ in readers.values()},
            location_id__in={loc for _, loc in readers.values()},
            status__in=(CopyStatus.MISMATCH, CopyStatus.MISSING),
        ).select_related("location__site")
    }
    if not copies:
        return {}
    repairs = {r.repair_of_id: r for r in DataTransfer.objects.filter(
        repair_of__in=[c.pk for c in copies.values()],
        status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)).select_related("origin_location__site")}
    found = {}
    for pk, key in readers.items():
        copy = copies.get(key)
        if copy is None:
            continue
        repair = repairs.get(copy.pk)
        if repair is not None:
            then = (f"it is being fetched again from {repair.origin_location} by repair transfer #{repair.pk} "
                    f"({repair.get_status_display().lower()})")
        else:
            then = "no good copy to fetch it from is known yet (see Needs attention)"
        found[pk] = Explanation(
            ExplanationCode.SOURCE_CORRUPT,
            f"Held: the copy it reads at {copy.location} was found {copy.get_status_display().lower()} at "
            f"{clock(copy.updated_at, now)}; {then}. It goes on once a good copy is back.",
            copy.updated_at,
        )
    return found


def _held(transfers: Sequence[DataTransfer], now: datetime) -> dict[int, Explanation]:
    pending = [t for t in transfers if t.status == JobStatus.PENDING and t.route_id is not None]
    if not pending:
        return {}
    routes = DataTransferRoute.objects.select_related(*ROUTE_RELATED).in_bulk({t.route_id for t in pending})
    probes_out = set(
        DataTransfer.objects.filter(status=JobStatus.ACTIVE,
                                    pk__in=[r.probe_transfer_id for r in routes.values() if r.probe_transfer_id])
        .values_list("pk", flat=True)
    ) if any(r.probe_transfer_id for r in routes.values()) else set()
    due_routes = {t.route_id for t in pending if t.next_attempt_at is None or t.next_attempt_at <= now}
    active = dict(
        DataTransfer.objects.filter(status=JobStatus.ACTIVE, route_id__in=due_routes).order_by()
        .values("route_id").annotate(n=Count("pk")).values_list("route_id", "n")
    ) if due_routes else {}
    found = {}
    for transfer in pending:
        route = routes.get(transfer.route_id)
        if route is None:
            continue
        paused = _paused(route, probes_out, now)
        if paused is not None:
            found[transfer.pk] = paused
        elif transfer.route_id in due_routes and (transfer.next_attempt_at is None or transfer.next_attempt_at <= now):
            n_active = active.get(route.pk, 0)
            if n_active >= route.max_concurrent:
                found[transfer.pk] = Explanation(
                    ExplanationCode.ROUTE_AT_LIMIT,
                    f"Route {route_name(route)} is at its limit of {route.max_concurrent} transfer"
                    f"{'s' if route.max_concurrent != 1 else ''} at once ({n_active} active): this one starts when "
                    "one of them ends.",
                    waiting_since(transfer, now),
                )
    return found


def route_name(route: DataTransferRoute) -> str:
    """The route's path, e.g. "ccat → cologne" or "ccat → cologne → cornell"."""
    return str(route).rsplit(" (", 1)[0]


def _paused(route: DataTransferRoute, probes_out: set[int], now: datetime) -> Explanation | None:
    """The route holds its transfers: paused by an operator, or paused automatically and not probing now."""
    since = clock(route.state_since, now)
    reason = f": {quoted_error(route.state_reason, 200)}" if route.state_reason else ""
    if route.state == RouteState.PAUSED_MANUAL:
        return Explanation(
            ExplanationCode.ROUTE_PAUSED,
            f"Held: route {route_name(route)} was paused by {route.state_by or 'an operator'} at {since}{reason}. "
            "Its transfers wait until an operator resumes it.",
            route.state_since,
        )
    if route.state != RouteState.PAUSED_AUTO:
        return None
    if route.cooldown_until is not None and route.cooldown_until > now:
        then = f"a probe transfer tests it from {clock(route.cooldown_until, now)}"
    elif route.probe_transfer_id in probes_out:
        then = f"probe transfer #{route.probe_transfer_id} is testing it now"
    else:
        return None  # the next claim on it is the probe: this transfer may be it
    return Explanation(
        ExplanationCode.ROUTE_PAUSED,
        f"Held: route {route_name(route)} paused itself at {since} after repeated failures{reason}; {then}, and it "
        "resumes when a probe succeeds.",
        route.state_since,
    )


def _at_relay(transfers: Sequence[DataTransfer], now: datetime) -> dict[int, Explanation]:
    """Arrived at a site that a relay route forwards from, and its next hop does not exist yet."""
    if not transfers:
        return {}
    rows = (
        DataTransfer.objects.filter(pk__in=[t.pk for t in transfers])
        .annotate(forwarded=Exists(DataTransfer.objects.filter(previous=OuterRef("pk"))))
        .filter(forwarded=False)
        .values_list("pk", "origin_location__site_id", "destination_location__site_id")
    )
    waiting = {pk: (origin, landed) for pk, origin, landed in rows}
    if not waiting:
        return {}
    relays = DataTransferRoute.objects.filter(
        route_type=RouteType.RELAY, relay_site_id__in={landed for _, landed in waiting.values()}
    ).select_related(*ROUTE_RELATED).order_by("pk")
    by_leg: dict[tuple[int, int], list[DataTransferRoute]] = {}
    for route in relays:
        by_leg.setdefault((route.origin_site_id, route.relay_site_id), []).append(route)
    found = {}
    for transfer in transfers:
        if transfer.pk not in waiting:
            continue
        candidates = by_leg.get(waiting[transfer.pk], [])
        own = [r for r in candidates if r.pk == transfer.route_id]
        route = (own or candidates or [None])[0]
        if route is not None:
            found[transfer.pk] = _relay_words(transfer, route, now)
    return found


def _relay_words(transfer: DataTransfer, route: DataTransferRoute, now: datetime) -> Explanation:
    hop = f"{route.relay_site} → {route.destination_site}"
    if not route.active:
        then = f"route {route_name(route)} is disabled, so the next hop is not created until it is enabled again"
    else:
        then = "the scheduler creates it at its next pass"
    return Explanation(
        ExplanationCode.RELAY_HOP,
        f"Arrived at the relay {route.relay_site} at {clock(transfer.finished_at, now)}; waiting for the relay hop "
        f"{hop} ({then}).",
        transfer.finished_at,
    )


def explain_raw_packages(raw_packages: Sequence[RawDataPackage], now: datetime) -> dict[int, Explanation]:
    """Raw packages in no bundle yet, waiting at a bundling point for more data (by raw package id).

    What the bundling pass would do (``transfers.planning``): the packages waiting at a buffer are
    sealed into a bundle once they reach the target size, or once the oldest waited the maximum.
    Four queries (locations, routes, where the packages wait, what waits at those buffers).
    """
    unbundled = [p.pk for p in raw_packages if not p.bundled]
    if not unbundled:
        return {}
    topology = Topology.load()
    policies = bundle_policies(topology)
    if not policies:
        return {}
    at = {}  # raw package id → (location id, arrived): the bundling point of highest priority
    copies = (RawDataPackageCopy.objects.filter(raw_package_id__in=unbundled, status=CopyStatus.PRESENT,
                                                location_id__in=list(policies))
              .filter(raw_package__bundle_membership__isnull=True)
              .values_list("raw_package_id", "location_id", "created_at"))
    for raw_id, loc_id, arrived in copies:
        rank = (-topology.locations[loc_id].priority, loc_id)
        if raw_id not in at or rank < (-topology.locations[at[raw_id][0]].priority, at[raw_id][0]):
            at[raw_id] = (loc_id, arrived)
    if not at:
        return {}
    pools = {
        row["location_id"]: row
        for row in RawDataPackageCopy.objects.filter(
            status=CopyStatus.PRESENT, location_id__in={loc for loc, _ in at.values()},
            raw_package__bundled=False, raw_package__bundle_membership__isnull=True,
        ).order_by().values("location_id").annotate(size=Sum("raw_package__size"), oldest=Min("created_at"))
    }
    found = {}
    for raw_id, (loc_id, arrived) in at.items():
        pool = pools.get(loc_id)
        if pool is not None:
            found[raw_id] = _bundle_words(topology.locations[loc_id].label, policies[loc_id], pool, arrived, now)
    return found


def _bundle_words(where: str, policy, pool: dict, arrived: datetime, now: datetime) -> Explanation:
    waiting, target = pool["size"] or 0, policy.target_size
    sealed_by = pool["oldest"] + policy.max_wait
    if waiting >= target or sealed_by <= now:
        then = "the scheduler's next bundling pass seals its bundle"
    else:
        then = (f"its bundle is sealed when {human_bytes(target)} are waiting, or at {clock(sealed_by, now)} "
                "at the latest")
    return Explanation(
        ExplanationCode.BUNDLE_FILLING,
        f"Waiting at {where} for more data to fill a bundle ({human_bytes(waiting)} of {human_bytes(target)} "
        f"waiting there): {then}.",
        arrived,
    )
