"""The scheduler's ``operations history`` pass: compact history for the dashboard's plots and /metrics.

Each tick it reads the transition log (django-fsm-log's StateLog) from where it stopped, by id, and
adds what finished to the running totals and to the current buckets; it writes the open transfers'
queue per route and hop and the bytes present at each location (counted by triggers as copies change,
``operations.usage``) into the current 5-minute and hourly buckets; once per 5-minute bucket it finds
the oldest raw package not yet safe and forgets samples past their keep time. A fixed number of
queries per tick, however many jobs there are, each reading what is still moving or what changed
since the last tick, never the years of history.
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, F, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django_fsm_log.models import StateLog

from operations import usage
from operations.models import (
    HistoryCursor,
    JobOutcomeTotal,
    LocationSample,
    OldestUnsafe,
    Resolution,
    RouteSample,
    RouteTotal,
    SafetySample,
)
from operations.selectors import find_oldest_unsafe_package
from opsdb import custody
from opsdb.choices import JobKind, JobStatus
from opsdb.models import DataLocation, RawDataPackageCopy
from opsdb.planning import PassResult
from opsdb.registry import job_kinds
from staging.models import LongTermArchiveTransfer
from transfers.models import DataTransfer, DataTransferPackage

CURSOR = "statelog"
EVENTS_PER_TICK = 50_000  # a backlog after a long stop is read over several ticks
KEEP = {Resolution.FIVE_MINUTES: timedelta(hours=48), Resolution.HOUR: timedelta(days=90)}
OPEN = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)
SAFETY_BINS_PER_DOUBLING = 4  # a bin spans a factor 2^(1/4) ≈ 1.19


class Outcome:
    COMPLETED = "completed"
    RETRIED = "retried"  # a failed attempt; the job waits for its next one
    FAILED = "failed"  # attempts spent (or not retryable): waits for an operator
    CANCELLED = "cancelled"


OUTCOMES = (Outcome.COMPLETED, Outcome.RETRIED, Outcome.FAILED, Outcome.CANCELLED)


def bucket_start(moment: datetime, resolution: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    if resolution == Resolution.HOUR:
        return moment.replace(minute=0)
    return moment.replace(minute=moment.minute - moment.minute % 5)


def outcome_of(transition: str, state: str) -> str | None:
    """What a logged transition means for the finished-jobs counters (None: not a finish)."""
    if transition == "complete":
        return Outcome.COMPLETED
    if transition in ("fail", "expire"):
        return Outcome.FAILED if state == JobStatus.FAILED else Outcome.RETRIED
    if transition == "cancel":
        return Outcome.CANCELLED
    return None


def safety_bin(seconds: float) -> int:
    return math.floor(SAFETY_BINS_PER_DOUBLING * math.log2(max(seconds, 1.0)))


def safety_bin_seconds(bin_: int) -> float:
    """The middle of a bin (geometric), in seconds."""
    return 2 ** ((bin_ + 0.5) / SAFETY_BINS_PER_DOUBLING)


@dataclass
class Event:
    id: int
    at: datetime
    kind: str
    job_id: int
    outcome: str


def record_history(*, now: datetime) -> PassResult:
    """Read new finishes into totals and buckets, sample queues and locations, forget old samples."""
    result = PassResult("operations history")
    events = _new_events()
    _add_totals(events)
    transfers = _transfers_of(events)
    _write_route_samples(now, events, transfers)
    _add_route_totals(events, transfers)
    _add_safety(events)
    first_of_bucket = not LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES,
                                                        start=bucket_start(now, Resolution.FIVE_MINUTES)).exists()
    _write_location_samples(now)
    if first_of_bucket:
        _record_oldest_unsafe(now)
        _forget_old(now)
    result.count = len(events)
    if events:
        result.say(f"{len(events)} finished attempts counted")
    return result


# --- the transition log -------------------------------------------------------------------------

def _new_events() -> list[Event]:
    cursor, _ = HistoryCursor.objects.get_or_create(name=CURSOR)
    kind_of = {ContentType.objects.get_for_model(model).pk: model.KIND for model in job_kinds.models()}
    rows = list(
        StateLog.objects.filter(pk__gt=cursor.last_id, content_type_id__in=kind_of).order_by("pk")
        .values_list("pk", "timestamp", "transition", "state", "content_type_id", "object_id")[:EVENTS_PER_TICK]
    )
    if not rows:
        return []
    HistoryCursor.objects.filter(pk=cursor.pk).update(last_id=rows[-1][0])
    events = []
    for pk, at, transition, state, content_type_id, object_id in rows:
        outcome = outcome_of(transition, state)
        if outcome is not None:
            events.append(Event(pk, at, kind_of[content_type_id], object_id, outcome))
    return events


def _add_totals(events: list[Event]) -> None:
    added: dict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        added[event.kind, event.outcome] += 1
    if not added:
        return
    have = {(row.kind, row.outcome): row.count for row in JobOutcomeTotal.objects.all()}
    JobOutcomeTotal.objects.bulk_create(
        [JobOutcomeTotal(kind=kind, outcome=outcome, count=have.get((kind, outcome), 0) + n)
         for (kind, outcome), n in added.items()],
        update_conflicts=True, unique_fields=["kind", "outcome"], update_fields=["count"],
    )


def _transfers_of(events: list[Event]) -> dict[int, dict]:
    ids = {e.job_id for e in events if e.kind == JobKind.TRANSFER}
    if not ids:
        return {}
    rows = DataTransfer.objects.filter(pk__in=ids, route__isnull=False).values(
        "pk", "route_id", "hop", size=Coalesce(F("transfer_package__size"), F("transfer_package__payload_size")),
    )
    return {row["pk"]: row for row in rows}


def _add_route_totals(events: list[Event], transfers: dict[int, dict]) -> None:
    added: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        transfer = transfers.get(event.job_id) if event.kind == JobKind.TRANSFER else None
        if transfer is not None and event.outcome == Outcome.COMPLETED:
            added[transfer["route_id"]][0] += transfer["size"] or 0
            added[transfer["route_id"]][1] += 1
    if not added:
        return
    have = {row.route_id: row for row in RouteTotal.objects.filter(route_id__in=added)}
    RouteTotal.objects.bulk_create(
        [RouteTotal(route_id=route_id,
                    bytes_done=(have[route_id].bytes_done if route_id in have else 0) + bytes_done,
                    transfers_done=(have[route_id].transfers_done if route_id in have else 0) + n)
         for route_id, (bytes_done, n) in added.items()],
        update_conflicts=True, unique_fields=["route"], update_fields=["bytes_done", "transfers_done"],
    )


# --- routes -------------------------------------------------------------------------------------

SNAPSHOT_FIELDS = ("queued_jobs", "queued_bytes", "active_jobs", "failed_jobs")
EVENT_FIELDS = ("succeeded", "failed_attempts", "bytes_done")


def route_queues() -> dict[tuple[int, int], dict[str, int]]:
    """Open transfers per (route, hop): pending/active/failed jobs, pending bytes and the oldest pending one's
    creation time (``oldest_pending``) — one query.

    The pending transfers' sizes are looked up one by one (a subquery each): a join would read the whole
    bundle table, which grows with the years of history while the open transfers stay few.
    """
    package_size = Subquery(DataTransferPackage.objects.filter(pk=OuterRef("transfer_package")).order_by().values(
        bytes=Coalesce("size", "payload_size")))
    rows = (
        DataTransfer.objects.filter(status__in=OPEN, route__isnull=False)
        .values("route_id", "hop", "status")
        .annotate(jobs=Count("pk"), since=Min("created_at"),
                  bytes=Sum(package_size, filter=Q(status=JobStatus.PENDING)))
        .order_by()
    )
    queues: dict[tuple[int, int], dict] = defaultdict(lambda: {**dict.fromkeys(SNAPSHOT_FIELDS, 0),
                                                               "oldest_pending": None})
    for row in rows:
        queue = queues[row["route_id"], row["hop"]]
        if row["status"] == JobStatus.PENDING:
            queue["queued_jobs"] += row["jobs"]
            queue["queued_bytes"] += row["bytes"] or 0
            queue["oldest_pending"] = row["since"]
        elif row["status"] == JobStatus.ACTIVE:
            queue["active_jobs"] += row["jobs"]
        else:
            queue["failed_jobs"] += row["jobs"]
    return queues


def _write_route_samples(now: datetime, events: list[Event], transfers: dict[int, dict]) -> None:
    current = {res: bucket_start(now, res) for res in Resolution.values}
    changes: dict[tuple[int, int, str, datetime], dict[str, int]] = defaultdict(dict)
    for (route_id, hop), queue in route_queues().items():
        for res, start in current.items():
            changes[route_id, hop, res, start].update({f: queue[f] for f in SNAPSHOT_FIELDS})
    added: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(EVENT_FIELDS, 0))
    for event in events:
        transfer = transfers.get(event.job_id) if event.kind == JobKind.TRANSFER else None
        if transfer is None or event.outcome == Outcome.CANCELLED:
            continue
        for res in Resolution.values:
            counts = added[transfer["route_id"], transfer["hop"], res, bucket_start(event.at, res)]
            if event.outcome == Outcome.COMPLETED:
                counts["succeeded"] += 1
                counts["bytes_done"] += transfer["size"] or 0
            else:
                counts["failed_attempts"] += 1
    existing = _existing_samples(set(current.values()) | {key[3] for key in added})
    rows = []
    for key in set(changes) | set(added) | {k for k in existing if k[3] == current[k[2]]}:
        old = existing.get(key)
        values = {f: getattr(old, f) if old else 0 for f in SNAPSHOT_FIELDS + EVENT_FIELDS}
        if key[3] == current[key[2]]:
            values.update(dict.fromkeys(SNAPSHOT_FIELDS, 0) | changes.get(key, {}))
        for field, n in added.get(key, {}).items():
            values[field] += n
        rows.append(RouteSample(route_id=key[0], hop=key[1], resolution=key[2], start=key[3], **values))
    if rows:
        RouteSample.objects.bulk_create(rows, update_conflicts=True,
                                        unique_fields=["route", "hop", "resolution", "start"],
                                        update_fields=list(SNAPSHOT_FIELDS + EVENT_FIELDS))


def _existing_samples(starts: Iterable[datetime]) -> dict[tuple[int, int, str, datetime], RouteSample]:
    return {(s.route_id, s.hop, s.resolution, s.start): s for s in RouteSample.objects.filter(start__in=starts)}


# --- raw data's time to safety ------------------------------------------------------------------

def _add_safety(events: list[Event]) -> None:
    """Raw packages that became safe: registered → the last archive copy they needed (``opsdb.custody``).

    Safe as custody says it: a verified copy in the archive of every site the package's routes
    deliver it to, and at least ``ARCHIVE_MIN_COPIES`` sites. A package is counted once, by the
    archive transfer that made the copy completing it (four queries for a tick's archive transfers).
    """
    done = {e.job_id: e.at for e in events if e.kind == JobKind.ARCHIVE and e.outcome == Outcome.COMPLETED}
    if not done:
        return
    # A repair (of a copy an audit found bad) puts back a copy the package was already safe with.
    archived = list(LongTermArchiveTransfer.objects.filter(pk__in=list(done), repair_of__isnull=True)
                    .values_list("pk", "raw_package_id", "destination_location_id"))
    copies: dict[int, list[RawDataPackageCopy]] = defaultdict(list)
    for copy in (RawDataPackageCopy.objects.filter(raw_package_id__in={p for _, p, _ in archived})
                 .select_related("location", "raw_package")):
        copies[copy.raw_package_id].append(copy)
    required = custody.required_archive_sites({p: [c.location_id for c in cs] for p, cs in copies.items()})
    added: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for pk, package_id, location_id in archived:
        completing = _completing_copy(copies[package_id], required.get(package_id, set()))
        if completing is not None and completing.location_id == location_id:
            hour = bucket_start(done[pk], Resolution.HOUR)
            seconds = (completing.created_at - completing.raw_package.created_at).total_seconds()
            added[hour][str(safety_bin(seconds))] += 1
    _add_safety_counts(added)


def _completing_copy(copies: list[RawDataPackageCopy], required_sites: set[int]) -> RawDataPackageCopy | None:
    """The safe archive copy whose making made the package safe; None while it is not safe."""
    first: dict[int, RawDataPackageCopy] = {}
    for copy in copies:
        if custody.is_safe_copy(copy, copy.raw_package):
            site = copy.location.site_id
            if site not in first or copy.created_at < first[site].created_at:
                first[site] = copy
    if not required_sites <= set(first) or len(first) < settings.ARCHIVE_MIN_COPIES:
        return None
    earliest = sorted(first.values(), key=lambda c: c.created_at)[: settings.ARCHIVE_MIN_COPIES]
    return max([first[site] for site in required_sites] + earliest, key=lambda c: c.created_at)


def _add_safety_counts(added: dict[datetime, dict[str, int]]) -> None:
    if not added:
        return
    have = {s.start: s.counts for s in SafetySample.objects.filter(start__in=list(added))}
    rows = []
    for start, bins in added.items():
        counts = dict(have.get(start, {}))
        for bin_, n in bins.items():
            counts[bin_] = counts.get(bin_, 0) + n
        rows.append(SafetySample(start=start, counts=counts))
    SafetySample.objects.bulk_create(rows, update_conflicts=True, unique_fields=["start"], update_fields=["counts"])


# --- locations and keep times -------------------------------------------------------------------

def _write_location_samples(now: datetime) -> None:
    """Every location's used bytes into the current buckets (the changes since the last tick added first)."""
    used = usage.fold_changes()
    rows = [LocationSample(location_id=location_id, resolution=res, start=bucket_start(now, res),
                           used_bytes=used.get(location_id, 0))
            for location_id in DataLocation.objects.values_list("pk", flat=True) for res in Resolution.values]
    LocationSample.objects.bulk_create(rows, update_conflicts=True, unique_fields=["location", "resolution", "start"],
                                       update_fields=["used_bytes"])


def _record_oldest_unsafe(now: datetime) -> None:
    package = find_oldest_unsafe_package()
    OldestUnsafe.objects.update_or_create(pk=1, defaults={
        "raw_package": package, "registered_at": package.created_at if package else None, "checked_at": now})


def _forget_old(now: datetime) -> None:
    for res, keep in KEEP.items():
        RouteSample.objects.filter(resolution=res, start__lt=now - keep).delete()
        LocationSample.objects.filter(resolution=res, start__lt=now - keep).delete()
    SafetySample.objects.filter(start__lt=now - KEEP[Resolution.HOUR]).delete()
