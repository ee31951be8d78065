"""Reads behind the dashboard, the Needs attention panel and /metrics: each a fixed number of queries.

Worker presence comes from what workers already leave behind: their API tokens' ``last_used_at``
(written at most once a minute per server process) and the heartbeats of the jobs they hold.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse

from operations.models import LocationSample, OldestUnsafe, Resolution
from opsdb.choices import JobStatus, LocationType
from opsdb.models import DataLocation, RawDataPackage, RawDataPackageCopy, Site, WorkerProfile
from opsdb.registry import job_kinds
from opsdb.work import JobKindHandler
from staging.models import LongTermArchiveTransfer
from transfers.models import DataTransfer, DataTransferPackage, DataTransferRoute

OPEN = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)
ROUTE_RELATED = ("origin_site", "destination_site", "relay_site", "origin_location__site",
                 "destination_location__site")


def changelist_url(model, **filters) -> str:
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return url + ("?" + "&".join(f"{k}={v}" for k, v in filters.items()) if filters else "")


def route_label(route: DataTransferRoute) -> str:
    """A short stable name for a route (Prometheus label, plot title): ``ccat->cologne``."""
    if route.origin_location_id:
        return f"{route.origin_location}->{route.destination_location}"
    if route.relay_site_id:
        return f"{route.origin_site}->{route.relay_site}->{route.destination_site}"
    return f"{route.origin_site}->{route.destination_site}"


def routes() -> list[DataTransferRoute]:
    return list(DataTransferRoute.objects.select_related(*ROUTE_RELATED))


# --- workers and sites --------------------------------------------------------------------------

@dataclass
class Worker:
    username: str
    site_ids: set[int]  # empty: every site
    names: set[str] = field(default_factory=set)  # the names it claims under
    last_seen: datetime | None = None
    jobs_held: int = 0

    def serves(self, site_id: int) -> bool:
        return not self.site_ids or site_id in self.site_ids


@dataclass
class WaitingWork:
    handler: JobKindHandler
    jobs: int
    since: datetime

    @property
    def label(self) -> str:
        meta = self.handler.model._meta
        return f"{self.jobs} {meta.verbose_name if self.jobs == 1 else meta.verbose_name_plural}"


@dataclass
class SiteState:
    site: Site
    workers: list[Worker]
    waiting: list[WaitingWork]
    now: datetime

    @property
    def waiting_jobs(self) -> int:
        return sum(w.jobs for w in self.waiting)

    @property
    def waiting_since(self) -> datetime | None:
        return min((w.since for w in self.waiting), default=None)

    @property
    def last_seen(self) -> datetime | None:
        return max((w.last_seen for w in self.workers if w.last_seen), default=None)

    @property
    def stalled(self) -> bool:
        """Work is due here and no worker serving the site was seen within ``WORKER_SILENT_SECONDS``."""
        cutoff = self.now - timedelta(seconds=settings.WORKER_SILENT_SECONDS)
        return bool(self.waiting) and (self.last_seen is None or self.last_seen < cutoff)

    def waiting_links(self) -> list[dict]:
        return [{"text": w.label, "url": changelist_url(w.handler.model, status__exact=JobStatus.PENDING,
                                                        **{f"{w.handler.site_field}__id__exact": self.site.pk})}
                for w in self.waiting]


@dataclass
class KindTables:
    """One kind's open jobs as the operations view reads them: two queries, pending rows and active rows."""

    handler: JobKindHandler
    pending_rows: list[dict]  # per site (when the kind has a site_field): due / stuck counts and times
    active_rows: list[dict]  # per (lease_user_id, lease_holder): held, last heartbeat, expired leases

    @property
    def pending(self) -> int:
        return sum(row["pending"] for row in self.pending_rows)

    @property
    def oldest_pending(self) -> datetime | None:
        return min((row["oldest"] for row in self.pending_rows if row["oldest"]), default=None)

    @property
    def unclaimed(self) -> tuple[int, datetime | None]:
        return (sum(row["stuck"] for row in self.pending_rows),
                min((row["stuck_since"] for row in self.pending_rows if row["stuck_since"]), default=None))

    @property
    def active(self) -> int:
        return sum(row["held"] for row in self.active_rows)

    @property
    def expired(self) -> tuple[int, datetime | None]:
        return (sum(row["expired"] for row in self.active_rows),
                min((row["expired_since"] for row in self.active_rows if row["expired_since"]), default=None))


def related_value(model, path: str):
    """The value at ``path`` (``location__site``, ``transfer__destination_location``) from ``model``'s rows:
    a join when the path starts at the job's location, else a subquery per row through its first relation.

    The subquery is a primary key lookup for each of the few rows read (open or failed jobs); a join
    would read the whole related table (e.g. every transfer, for the unpacks' destination sites).
    """
    first, _, rest = path.partition("__")
    related = model._meta.get_field(first).related_model
    if not rest or related is DataLocation:
        return F(path)
    return Subquery(related.objects.filter(pk=OuterRef(first)).order_by().values(rest))


def job_tables(now: datetime) -> list[KindTables]:
    """Every kind's pending and active jobs summed up, two queries a kind (read once, shared by the view's parts).

    Due: pending with its backoff over. Stuck: due since before ``STUCK_PENDING_SECONDS`` ago and not
    claimed in that time either.
    """
    cutoff = now - timedelta(seconds=settings.STUCK_PENDING_SECONDS)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    stuck = ((Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, created_at__lt=cutoff))
             & (Q(claimed_at__isnull=True) | Q(claimed_at__lt=cutoff)))
    due_since = Coalesce("next_attempt_at", "created_at")
    expired = Q(lease_expires_at__lt=now)
    tables = []
    for handler in job_kinds:
        pending = handler.model.objects.pending()
        sums = {"pending": Count("pk"), "oldest": Min("created_at"), "due": Count("pk", filter=due),
                "due_since": Min(due_since, filter=due), "stuck": Count("pk", filter=stuck),
                "stuck_since": Min(due_since, filter=stuck)}
        if handler.site_field:
            site = related_value(handler.model, handler.site_field)
            pending_rows = list(pending.values(site=site).annotate(**sums).order_by())
        else:
            pending_rows = [{"site": None, **pending.aggregate(**sums)}]
        active_rows = list(handler.model.objects.active().values("lease_user_id", "lease_holder").annotate(
            held=Count("pk"), seen=Max("heartbeat_at"), expired=Count("pk", filter=expired),
            expired_since=Min("lease_expires_at", filter=expired)).order_by())
        tables.append(KindTables(handler, pending_rows, active_rows))
    return tables


def workers(now: datetime, tables: list[KindTables] | None = None) -> list[Worker]:
    """Every worker account, with its sites, when it was last seen and the jobs it holds (2 queries + tables)."""
    tables = job_tables(now) if tables is None else tables
    profiles = (WorkerProfile.objects.select_related("user").prefetch_related("sites")
                .annotate(last_used=Max("user__api_tokens__last_used_at")).order_by("user__username"))
    by_user = {}
    for profile in profiles:
        by_user[profile.user_id] = Worker(profile.user.get_username(), {s.pk for s in profile.sites.all()},
                                          last_seen=profile.last_used)
    for table in tables:
        for row in table.active_rows:
            worker = by_user.get(row["lease_user_id"])
            if worker is None:
                continue
            worker.jobs_held += row["held"]
            worker.names.add(row["lease_holder"])
            if row["seen"] and (worker.last_seen is None or row["seen"] > worker.last_seen):
                worker.last_seen = row["seen"]
    return list(by_user.values())


def waiting_by_site(tables: list[KindTables]) -> dict[int, list[WaitingWork]]:
    """Jobs due now (pending, backoff over) per site and kind, with the time the oldest became due."""
    waiting: dict[int, list[WaitingWork]] = defaultdict(list)
    for table in tables:
        for row in table.pending_rows:
            if row["site"] is not None and row["due"]:
                waiting[row["site"]].append(WaitingWork(table.handler, row["due"], row["due_since"]))
    return waiting


def sites(now: datetime, all_workers: list[Worker] | None = None,
          tables: list[KindTables] | None = None) -> list[SiteState]:
    tables = job_tables(now) if tables is None else tables
    all_workers = workers(now, tables) if all_workers is None else all_workers
    waiting = waiting_by_site(tables)
    return [SiteState(site, [w for w in all_workers if w.serves(site.pk)], waiting.get(site.pk, []), now)
            for site in Site.objects.order_by("name")]


# --- locations ----------------------------------------------------------------------------------

@dataclass
class LocationState:
    location: DataLocation
    used_bytes: int | None
    sampled_at: datetime | None

    @property
    def fill(self) -> float | None:
        capacity = self.location.capacity_bytes
        if not capacity or self.used_bytes is None:
            return None
        return self.used_bytes / capacity

    @property
    def high_watermark_bytes(self) -> int | None:
        """Where deletion of archived data starts (UNDER_PRESSURE locations); None without a capacity."""
        capacity = self.location.capacity_bytes
        return capacity * self.location.high_watermark_percent // 100 if capacity else None

    @property
    def low_watermark_bytes(self) -> int | None:
        capacity = self.location.capacity_bytes
        return capacity * self.location.low_watermark_percent // 100 if capacity else None

    @property
    def above_high_watermark(self) -> bool:
        high = self.high_watermark_bytes
        return high is not None and self.used_bytes is not None and self.used_bytes > high


def locations() -> list[LocationState]:
    """Every location with its used bytes at the history's latest sample (two queries)."""
    latest = LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES).aggregate(at=Max("start"))["at"]
    used = dict(LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES, start=latest)
                .values_list("location_id", "used_bytes")) if latest else {}
    return [LocationState(loc, used.get(loc.pk), latest if loc.pk in used else None)
            for loc in DataLocation.objects.select_related("site")]


# --- raw data not yet safe ----------------------------------------------------------------------

def oldest_unsafe_package() -> OldestUnsafe | None:
    """The oldest raw package not yet safe, as the scheduler's history pass last found it (one query)."""
    return OldestUnsafe.objects.select_related("raw_package").filter(pk=1).first()


def find_oldest_unsafe_package() -> RawDataPackage | None:
    """The oldest raw package still on its way to an archive (five queries, each over the open jobs).

    Not yet safe: waiting at a buffer for a bundle (and not archived anywhere), in a bundle being
    built or moved, or with an archive transfer not yet done.
    """
    archived = RawDataPackageCopy.objects.present().filter(
        raw_package=OuterRef("pk"), location__location_type=LocationType.LONG_TERM_ARCHIVE)
    candidates = [
        RawDataPackage.objects.filter(bundled=False).filter(~Exists(archived)),
        RawDataPackage.objects.filter(bundle_membership__transfer_package__in=DataTransferPackage.objects.filter(
            status__in=OPEN)),
        RawDataPackage.objects.filter(bundle_membership__transfer_package__in=DataTransfer.objects.filter(
            status__in=OPEN).values("transfer_package_id")),
        RawDataPackage.objects.filter(pk__in=LongTermArchiveTransfer.objects.filter(
            status__in=OPEN).values("raw_package_id")),
    ]
    # Aggregates, not ORDER BY … LIMIT 1: that walks the created_at index through every safe package.
    oldest = [(qs.aggregate(at=Min("created_at"))["at"], n) for n, qs in enumerate(candidates)]
    oldest = [(at, n) for at, n in oldest if at is not None]
    if not oldest:
        return None
    at, n = min(oldest)
    return candidates[n].filter(created_at=at).order_by("pk").first()
