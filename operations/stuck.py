"""Stuck work, not only failed work: what waits with nobody moving it.

- jobs due for longer than ``STUCK_PENDING_SECONDS`` that nobody claimed in that time;
- sites with due work and no worker serving them seen for ``WORKER_SILENT_SECONDS``;
- routes that cannot move data (paused, or inactive) while transfers wait on them;
- leases that ran out (the scheduler's next tick recovers them; many, or old ones, mean it is not running).

Shown on the dashboard and, through ``settings.ADMIN_ATTENTION``, in the admin's Needs attention panel.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from operations import selectors
from operations.history import route_queues
from opsdb.choices import JobStatus
from opsdb.work import JobKindHandler
from transfers.models import DataTransferRoute


@dataclass
class _KindJobs:
    """Jobs of one kind in one stuck situation since ``since``: a line with a link to their list."""

    handler: JobKindHandler
    jobs: int
    since: datetime
    now: datetime

    listed_status: ClassVar[str]

    @property
    def url(self) -> str:
        return selectors.changelist_url(self.handler.model, status__exact=self.listed_status)

    @property
    def jobs_named(self) -> str:
        meta = self.handler.model._meta
        return f"{self.jobs} {meta.verbose_name if self.jobs == 1 else meta.verbose_name_plural}"

    @property
    def since_words(self) -> str:
        return f"{_when(self.since)} ({timesince(self.since, self.now)})"


@dataclass
class UnclaimedJobs(_KindJobs):
    listed_status: ClassVar[str] = JobStatus.PENDING

    @property
    def text(self) -> str:
        return f"{self.jobs_named}, due since {self.since_words}, not claimed"


@dataclass
class BlockedRoute:
    route: DataTransferRoute
    queued_jobs: int
    queued_bytes: int

    @property
    def url(self) -> str:
        return reverse("admin:transfers_datatransferroute_change", args=[self.route.pk])

    @property
    def reason(self) -> str:
        if self.route.is_paused:
            state = self.route.get_state_display().lower()
            since = f" since {_when(self.route.state_since)}" if self.route.state_since else ""
            by = f" by {self.route.state_by}" if self.route.state_by else ""
            why = f": {self.route.state_reason}" if self.route.state_reason else ""
            return f"{state}{since}{by}{why}"
        return "inactive (creates no new transfers; its waiting ones are still claimable)"

    def text(self) -> str:
        return (f"{self.route}: {self.reason} — {self.queued_jobs} transfer{'s' if self.queued_jobs != 1 else ''} "
                f"waiting")


@dataclass
class ExpiredLeases(_KindJobs):
    listed_status: ClassVar[str] = JobStatus.ACTIVE

    @property
    def text(self) -> str:
        return f"{self.jobs_named} with a lease run out since {self.since_words}"


@dataclass
class StuckWork:
    now: datetime
    unclaimed: list[UnclaimedJobs]
    stalled_sites: list[selectors.SiteState]
    blocked_routes: list[BlockedRoute]
    expired_leases: list[ExpiredLeases]

    @property
    def count(self) -> int:
        return (sum(u.jobs for u in self.unclaimed) + len(self.stalled_sites) + len(self.blocked_routes)
                + sum(e.jobs for e in self.expired_leases))


def _when(moment: datetime) -> str:
    """"14:05" today, "2026-11-26 14:05" before."""
    local, today = timezone.localtime(moment), timezone.localdate()
    return f"{local:%H:%M}" if local.date() == today else f"{local:%Y-%m-%d %H:%M}"


def unclaimed_jobs(tables: list[selectors.KindTables], now: datetime) -> list[UnclaimedJobs]:
    """Per kind: jobs due for longer than the threshold whose last claim (if any) is older too."""
    found = []
    for table in tables:
        jobs, since = table.unclaimed
        if jobs:
            found.append(UnclaimedJobs(table.handler, jobs, since, now))
    return found


def blocked_routes(routes: list[DataTransferRoute] | None = None, queues: dict | None = None) -> list[BlockedRoute]:
    """Routes paused or inactive while transfers wait on them (two queries, none when both are given)."""
    queues = route_queues() if queues is None else queues
    waiting: dict[int, list[int]] = {}
    for (route_id, _), queue in queues.items():
        if queue["queued_jobs"]:
            jobs, size = waiting.get(route_id, [0, 0])
            waiting[route_id] = [jobs + queue["queued_jobs"], size + queue["queued_bytes"]]
    routes = selectors.routes() if routes is None else routes
    candidates = [r for r in routes if r.pk in waiting and (r.is_paused or not r.active)]
    return [BlockedRoute(r, *waiting[r.pk]) for r in candidates]


def expired_leases(tables: list[selectors.KindTables], now: datetime) -> list[ExpiredLeases]:
    found = []
    for table in tables:
        jobs, since = table.expired
        if jobs:
            found.append(ExpiredLeases(table.handler, jobs, since, now))
    return found


def stuck_work(now: datetime | None = None, site_states: list[selectors.SiteState] | None = None,
               routes: list[DataTransferRoute] | None = None, queues: dict | None = None,
               tables: list[selectors.KindTables] | None = None) -> StuckWork:
    """Everything stuck; pass what the caller already read (job tables, sites, routes, queues) to read it once."""
    now = now or timezone.now()
    tables = selectors.job_tables(now) if tables is None else tables
    site_states = selectors.sites(now, tables=tables) if site_states is None else site_states
    return StuckWork(now, unclaimed_jobs(tables, now), [s for s in site_states if s.stalled],
                     blocked_routes(routes, queues), expired_leases(tables, now))


def stalled_text(state: selectors.SiteState) -> str:
    """"No worker serving cologne seen for 47 minutes (cologne-dtn-1 last seen 13:02); 12 jobs due since 13:05"."""
    now = state.now
    if not state.workers:
        who = "no worker account serves it"
    else:
        seen = [f"{', '.join(sorted(w.names)) or w.username} last seen "
                + (f"{_when(w.last_seen)}" if w.last_seen else "never") for w in state.workers]
        who = "; ".join(seen)
    silent = f"for {timesince(state.last_seen, now)}" if state.last_seen else "ever"
    return (f"No worker serving {state.site.name} seen {silent} ({who}); {state.waiting_jobs} job"
            f"{'s' if state.waiting_jobs != 1 else ''} due since {_when(state.waiting_since)}")


def attention_items() -> list[dict]:
    """The rows stuck work adds to the admin's Needs attention panel (see ``settings.ADMIN_ATTENTION``)."""
    now = timezone.now()
    stuck = stuck_work(now)
    minutes = settings.WORKER_SILENT_SECONDS // 60 or 1
    hours = settings.STUCK_PENDING_SECONDS / 3600
    dashboard = reverse("operations:dashboard")
    return [
        {"label": f"Sites with work and no worker seen for {minutes} min", "count": len(stuck.stalled_sites),
         "url": f"{dashboard}#sites",
         "details": [{"text": stalled_text(s), "url": link["url"]} for s in stuck.stalled_sites
                     for link in s.waiting_links()[:1]]},
        {"label": f"Jobs due for over {hours:g} h and not claimed", "count": sum(u.jobs for u in stuck.unclaimed),
         "url": f"{dashboard}#stuck", "details": [{"text": u.text, "url": u.url} for u in stuck.unclaimed]},
        {"label": "Routes that cannot move their waiting data", "count": len(stuck.blocked_routes),
         "url": f"{dashboard}#routes", "details": [{"text": b.text(), "url": b.url} for b in stuck.blocked_routes]},
        # Counted from the job tables read above (the panel once counted them again, a query per kind).
        *({"label": f"{e.handler.model._meta.verbose_name_plural.capitalize()} with an expired lease",
           "count": e.jobs, "url": e.url, "details": [{"text": e.text, "url": e.url}]}
          for e in stuck.expired_leases),
    ]
