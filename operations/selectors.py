"""Reads behind the dashboard, the Needs attention panel and /metrics: each a fixed number of queries.

Worker presence comes from what workers already leave behind: their API tokens' ``last_used_at``
(written at most once a minute per server process) and the heartbeats of the jobs they hold.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Coalesce
from django.urls import reverse

from operations.models import LocationSample, Resolution
from opsdb.choices import JobStatus, LocationType
from opsdb.models import DataLocation, RawDataPackage, Site, WorkerProfile
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


def workers(now: datetime) -> list[Worker]:
    """Every worker account, with its sites, when it was last seen and the jobs it holds (2 + kinds queries)."""
    profiles = (WorkerProfile.objects.select_related("user").prefetch_related("sites")
                .annotate(last_used=Max("user__api_tokens__last_used_at")).order_by("user__username"))
    by_user = {}
    for profile in profiles:
        by_user[profile.user_id] = Worker(profile.user.get_username(), {s.pk for s in profile.sites.all()},
                                          last_seen=profile.last_used)
    for handler in job_kinds:
        held = (handler.model.objects.active().filter(lease_user_id__in=list(by_user))
                .values("lease_user_id", "lease_holder").annotate(n=Count("pk"), seen=Max("heartbeat_at")))
        for row in held:
            worker = by_user[row["lease_user_id"]]
            worker.jobs_held += row["n"]
            worker.names.add(row["lease_holder"])
            if row["seen"] and (worker.last_seen is None or row["seen"] > worker.last_seen):
                worker.last_seen = row["seen"]
    return list(by_user.values())


def waiting_by_site(now: datetime) -> dict[int, list[WaitingWork]]:
    """Jobs due now (pending, backoff over) per site and kind, with the oldest one's time (one query a kind)."""
    waiting: dict[int, list[WaitingWork]] = defaultdict(list)
    for handler in job_kinds:
        if not handler.site_field:
            continue
        rows = (handler.model.objects.due(now).values(handler.site_field)
                .annotate(n=Count("pk"), since=Min(Coalesce("next_attempt_at", "created_at"))).order_by())
        for row in rows:
            waiting[row[handler.site_field]].append(WaitingWork(handler, row["n"], row["since"]))
    return waiting


def sites(now: datetime, all_workers: list[Worker] | None = None) -> list[SiteState]:
    all_workers = workers(now) if all_workers is None else all_workers
    waiting = waiting_by_site(now)
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


def locations() -> list[LocationState]:
    """Every location with its used bytes at the history's latest sample (two queries)."""
    latest = LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES).aggregate(at=Max("start"))["at"]
    used = dict(LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES, start=latest)
                .values_list("location_id", "used_bytes")) if latest else {}
    return [LocationState(loc, used.get(loc.pk), latest if loc.pk in used else None)
            for loc in DataLocation.objects.select_related("site")]


# --- raw data not yet safe ----------------------------------------------------------------------

def oldest_unsafe_package() -> RawDataPackage | None:
    """The oldest raw package still on its way to an archive (four index-driven queries).

    Not yet safe: waiting at a buffer for a bundle (and not archived anywhere), in a bundle being
    built or moved, or with an archive transfer not yet done.
    """
    archived = Q(copies__status="PRESENT", copies__location__location_type=LocationType.LONG_TERM_ARCHIVE)
    candidates = [
        RawDataPackage.objects.filter(bundled=False).exclude(archived),
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
