"""Prometheus metrics at /metrics (``prometheus_client``).

Two sources. What lives in the database (jobs, queues, locations, workers, the running totals the
scheduler's history pass keeps) is read at scrape time by ``DatabaseCollector``, so every server
process answers the same. Request counts and latency are counted in each process; under gunicorn
with several workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder (docs/operations.md) and
the scrape adds up every process's files.

Who may scrape: loopback clients (not proxied: a request carrying a forwarding header came through
a proxy and is not trusted as local), and anyone presenting ``METRICS_BEARER_TOKEN`` when set.
"""

import ipaddress
import os
import secrets
import time

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from operations import selectors
from operations.history import route_queues
from operations.models import JobOutcomeTotal, RouteTotal
from opsdb.choices import JobStatus

REQUESTS = Counter("opsdb_http_requests", "HTTP requests answered, by method, URL name and status code.",
                   ["method", "view", "status"])
LATENCY = Histogram("opsdb_http_request_duration_seconds", "Time to answer an HTTP request, by method and URL name.",
                    ["method", "view"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


class RequestMetricsMiddleware:
    """Counts every request and its latency, labelled by the URL's name (not its path: bounded labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.url_name or "unnamed") if match else "unmatched"
        method = request.method if request.method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                                      "OPTIONS") else "other"
        LATENCY.labels(method, view).observe(time.perf_counter() - started)
        REQUESTS.labels(method, view, str(response.status_code)).inc()
        return response


def scrape_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(
            header[7:].strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")):
        return True
    if any(name in request.META for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        if settings.METRICS_BEARER_TOKEN:
            response = HttpResponse("A bearer token is needed to read the metrics from this address.\n",
                                    status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse("The metrics answer loopback addresses only (set METRICS_BEARER_TOKEN to allow "
                            "others).\n", status=403, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry) + generate_latest(database), content_type=CONTENT_TYPE_LATEST)


class DatabaseCollector:
    """The figures that live in the database, read at each scrape (a fixed number of queries)."""

    def collect(self):
        now = timezone.now()
        tables = selectors.job_tables(now)
        yield from self._jobs(now, tables)
        yield from self._routes()
        yield from self._locations()
        yield from self._safety(now)
        yield from self._workers(now, tables)

    def _jobs(self, now, tables: list[selectors.KindTables]):
        jobs = GaugeMetricFamily("opsdb_jobs", "Open jobs (pending, active, failed) by kind and status; finished "
                                 "jobs are counted by opsdb_job_finished_total.", labels=["kind", "status"])
        oldest = GaugeMetricFamily("opsdb_job_oldest_pending_seconds",
                                   "Age of the oldest pending job of each kind (0 when none).", labels=["kind"])
        attention = GaugeMetricFamily("opsdb_jobs_requiring_intervention",
                                      "Jobs waiting for an operator, by kind.", labels=["kind"])
        expired = GaugeMetricFamily("opsdb_jobs_lease_expired", "Active jobs whose lease ran out, by kind.",
                                    labels=["kind"])
        for table in tables:
            handler = table.handler
            failed = handler.model.objects.failed().aggregate(
                n=Count("pk"), attention=Count("pk", filter=Q(**handler.attention_filter)))
            jobs.add_metric([handler.kind, JobStatus.PENDING], table.pending)
            jobs.add_metric([handler.kind, JobStatus.ACTIVE], table.active)
            jobs.add_metric([handler.kind, JobStatus.FAILED], failed["n"])
            first = table.oldest_pending
            oldest.add_metric([handler.kind], (now - first).total_seconds() if first else 0)
            attention.add_metric([handler.kind], failed["attention"])
            expired.add_metric([handler.kind], table.expired[0])
        finished = CounterMetricFamily("opsdb_job_finished", "Attempts finished, by kind and outcome (completed, "
                                       "retried, failed, cancelled), as counted by the scheduler.",
                                       labels=["kind", "outcome"])
        for row in JobOutcomeTotal.objects.order_by("kind", "outcome"):
            finished.add_metric([row.kind, row.outcome], row.count)
        yield from (jobs, oldest, attention, expired, finished)

    def _routes(self):
        queued = GaugeMetricFamily("opsdb_route_queued_bytes", "Bytes of the pending transfers of each route.",
                                   labels=["route"])
        queued_jobs = GaugeMetricFamily("opsdb_route_queued_jobs", "Pending transfers of each route.",
                                        labels=["route"])
        moved = CounterMetricFamily("opsdb_transfer_bytes", "Bytes of the transfers each route completed.",
                                    labels=["route"])
        paused = GaugeMetricFamily("opsdb_route_paused", "1 when the route is paused or inactive.", labels=["route"])
        queues = route_queues()
        totals = dict(RouteTotal.objects.values_list("route_id", "bytes_done"))
        for route in selectors.routes():
            label = selectors.route_label(route)
            mine = [q for (route_id, _), q in queues.items() if route_id == route.pk]
            queued.add_metric([label], sum(q["queued_bytes"] for q in mine))
            queued_jobs.add_metric([label], sum(q["queued_jobs"] for q in mine))
            moved.add_metric([label], totals.get(route.pk, 0))
            paused.add_metric([label], int(route.is_paused or not route.active))
        yield from (queued, queued_jobs, moved, paused)

    def _locations(self):
        used = GaugeMetricFamily("opsdb_location_used_bytes", "Bytes present at each location (the scheduler's "
                                 "latest sample).", labels=["location", "type"])
        capacity = GaugeMetricFamily("opsdb_location_capacity_bytes", "Capacity of each location that has one.",
                                     labels=["location", "type"])
        high = GaugeMetricFamily("opsdb_location_high_watermark_bytes", "Bytes above which deletion of archived "
                                 "data starts (UNDER_PRESSURE locations), for each location with a capacity.",
                                 labels=["location", "type"])
        low = GaugeMetricFamily("opsdb_location_low_watermark_bytes", "Bytes down to which that deletion frees "
                                "space, for each location with a capacity.", labels=["location", "type"])
        for state in selectors.locations():
            labels = [str(state.location), state.location.location_type]
            if state.used_bytes is not None:
                used.add_metric(labels, state.used_bytes)
            if state.location.capacity_bytes is not None:
                capacity.add_metric(labels, state.location.capacity_bytes)
                high.add_metric(labels, state.high_watermark_bytes)
                low.add_metric(labels, state.low_watermark_bytes)
        yield from (used, capacity, high, low)

    def _safety(self, now):
        oldest = GaugeMetricFamily("opsdb_oldest_unsafe_raw_package_seconds",
                                   "Age of the oldest raw package not yet safe in an archive (0 when none), as the "
                                   "scheduler found it at most 5 minutes ago; absent before its first check.")
        found = selectors.oldest_unsafe_package()
        if found is not None:
            oldest.add_metric([], (now - found.registered_at).total_seconds() if found.registered_at else 0)
        yield oldest

    def _workers(self, now, tables: list[selectors.KindTables]):
        seen = GaugeMetricFamily("opsdb_worker_last_seen_seconds", "Seconds since each worker was last seen (an "
                                 "API request or a heartbeat), per site it serves ('*': every site).",
                                 labels=["worker", "site"])
        waiting = GaugeMetricFamily("opsdb_site_jobs_waiting", "Jobs due now (pending, backoff over) at each site.",
                                    labels=["site"])
        all_workers = selectors.workers(now, tables)
        site_states = selectors.sites(now, all_workers, tables)
        names = {state.site.pk: state.site.name for state in site_states}
        for worker in all_workers:
            if worker.last_seen is None:
                continue
            age = (now - worker.last_seen).total_seconds()
            for site in sorted(names[pk] for pk in worker.site_ids if pk in names) or ["*"]:
                seen.add_metric([worker.username, site], age)
        for state in site_states:
            waiting.add_metric([state.site.name], state.waiting_jobs)
        yield from (seen, waiting)

