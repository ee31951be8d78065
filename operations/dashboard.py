"""What the operations dashboard shows, read in a fixed number of queries whatever the number of jobs."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Func, Q, Subquery
from django.db.models.functions import Substr
from django.utils import timezone

from operations import selectors, stuck
from operations.charts import Series, line_chart
from operations.history import route_queues, safety_bin_seconds
from operations.models import LocationSample, Resolution, RouteSample, SafetySample
from opsdb.choices import LocationType
from opsdb.planning import human_bytes
from opsdb.registry import job_kinds
from transfers.models import DataTransferRoute

CAUSE_LENGTH = 80  # failures are grouped by the first characters of their last error
FAILURES_READ = 500  # the latest failures of each kind grouped by cause at each page view


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def human_rate(bytes_per_second: float) -> str:
    return f"{human_bytes(int(bytes_per_second))}/s"


@dataclass
class Window:
    succeeded: int = 0
    failed: int = 0
    bytes_done: int = 0
    seconds: float = 3600

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_done / self.seconds

    @property
    def jobs_per_hour(self) -> float:
        return self.succeeded / (self.seconds / 3600)

    @property
    def success_rate(self) -> float | None:
        tried = self.succeeded + self.failed
        return self.succeeded / tried if tried else None


@dataclass
class RouteRow:
    route: DataTransferRoute
    hop: int
    queue: dict
    hour: Window
    day: Window
    now: datetime

    @property
    def label(self) -> str:
        return selectors.route_label(self.route) + (f" (hop {self.hop})" if self.hop > 1 else "")

    @property
    def oldest_pending_age(self) -> str:
        since = self.queue.get("oldest_pending")
        return human_duration((self.now - since).total_seconds()) if since else "—"

    @property
    def drain(self) -> str:
        """Time to move the queued bytes at the last hour's rate (else the last day's)."""
        queued = self.queue.get("queued_bytes", 0)
        if not queued:
            return "—"
        rate = self.hour.bytes_per_second or self.day.bytes_per_second
        return human_duration(queued / rate) if rate else "never at the current rate"


def route_rows(now: datetime, routes: list[DataTransferRoute], queues: dict, recent: list) -> list:
    hour, day = defaultdict(lambda: Window(seconds=3600)), defaultdict(lambda: Window(seconds=86400))
    for sample in recent:
        key = (sample.route_id, sample.hop)
        windows = [day[key]] + ([hour[key]] if sample.start >= now - timedelta(hours=1) else [])
        for window in windows:
            window.succeeded += sample.succeeded
            window.failed += sample.failed_attempts
            window.bytes_done += sample.bytes_done
    keys = set(queues) | set(hour) | set(day)
    rows = []
    for route in routes:
        hops = sorted({hop for route_id, hop in keys if route_id == route.pk}) or [1]
        rows += [RouteRow(route, hop, queues.get((route.pk, hop), {}), hour[route.pk, hop], day[route.pk, hop], now)
                 for hop in hops]
    return rows


def route_charts(now: datetime, routes: list[DataTransferRoute], recent: list, week: list) -> list[dict]:
    labels = {r.pk: selectors.route_label(r) for r in routes}
    charts = []
    for samples, start, step, time_format, span in ((recent, now - timedelta(hours=24), 300, "%a %H:%M", "24 h"),
                                                    (week, now - timedelta(days=7), 3600, "%d %b", "7 days")):
        throughput, backlog = defaultdict(list), defaultdict(list)
        for s in samples:
            name = labels.get(s.route_id, f"route #{s.route_id}") + (f" hop {s.hop}" if s.hop > 1 else "")
            throughput[name].append((s.start, s.bytes_done / step))
            backlog[name].append((s.start, s.queued_bytes))
        charts.append({"span": span, "throughput": line_chart(
            f"Throughput per route, last {span}", [Series(k, v) for k, v in sorted(throughput.items())],
            start, now, human_rate, time_format=time_format),
            "backlog": line_chart(f"Backlog per route, last {span}",
                                  [Series(k, v) for k, v in sorted(backlog.items())], start, now,
                                  lambda v: human_bytes(int(v)), time_format=time_format)})
    return charts


def buffer_charts(now: datetime, location_states: list[selectors.LocationState]) -> list:
    buffers = {s.location.pk: s.location for s in location_states
               if s.location.location_type == LocationType.BUFFER}
    samples = LocationSample.objects.filter(location_id__in=list(buffers)).filter(
        Q(resolution=Resolution.FIVE_MINUTES, start__gte=now - timedelta(hours=24))
        | Q(resolution=Resolution.HOUR, start__gte=now - timedelta(days=7)))
    by = {Resolution.FIVE_MINUTES: defaultdict(list), Resolution.HOUR: defaultdict(list)}
    for s in samples.order_by("start").values_list("location_id", "resolution", "start", "used_bytes", named=True):
        location = buffers[s.location_id]
        value = s.used_bytes / location.capacity_bytes * 100 if location.capacity_bytes else s.used_bytes
        by[s.resolution][str(location)].append((s.start, value))
    charts = []
    for res, start, span, time_format in ((Resolution.FIVE_MINUTES, now - timedelta(hours=24), "24 h", "%a %H:%M"),
                                          (Resolution.HOUR, now - timedelta(days=7), "7 days", "%d %b")):
        with_capacity = {str(loc) for loc in buffers.values() if loc.capacity_bytes}
        highs = sorted({loc.high_watermark_percent for loc in buffers.values() if loc.capacity_bytes})
        charts.append(line_chart(
            f"Buffer fill, last {span} (% of capacity; bytes where none is set)",
            [Series(k + ("" if k in with_capacity else " (bytes)"), v) for k, v in sorted(by[res].items())],
            start, now, lambda v: f"{v:,.0f}", time_format=time_format,
            marks=[(f"high watermark {high} %", high) for high in highs]))
    return charts


def safety(now: datetime) -> dict:
    """Time to safety (median, 95th percentile) over 24 h and 7 days, from the hourly histograms (one query)."""
    day, week = defaultdict(int), defaultdict(int)
    for sample in SafetySample.objects.filter(start__gte=now - timedelta(days=7)):
        for bin_, n in sample.counts.items():
            week[int(bin_)] += n
            if sample.start >= now - timedelta(hours=24):
                day[int(bin_)] += n
    return {"day": _percentiles(day), "week": _percentiles(week)}


def _percentiles(histogram: dict[int, int]) -> dict:
    total = sum(histogram.values())
    result = {"packages": total, "median": "—", "p95": "—"}
    running = 0
    for bin_ in sorted(histogram):
        running += histogram[bin_]
        if result["median"] == "—" and running >= 0.5 * total:
            result["median"] = human_duration(safety_bin_seconds(bin_))
        if running >= 0.95 * total:
            result["p95"] = human_duration(safety_bin_seconds(bin_))
            break
    return result


def failure_causes(location_labels: dict[int, str]) -> tuple[list[dict], list[dict]]:
    """Jobs waiting for an operator, grouped by kind, location and the start of their last error (a query a kind).

    Each kind's latest ``FAILURES_READ`` (by id, read along its status index) are grouped, with the kind's
    total counted from the index alone: years of failed jobs are not read row by row at every page view.
    Returned: the groups, and per kind with more than that the total and how many were grouped.
    """
    groups, partial = [], []
    for handler in job_kinds:
        model = handler.model
        location_field = handler.site_field.rsplit("__", 1)[0] if handler.site_field else ""
        attention = model.objects.filter(**handler.attention_filter)
        total = Subquery(attention.order_by().annotate(n=Func("pk", function="COUNT")).values("n"))
        values = {"cause": Substr("last_error", 1, CAUSE_LENGTH)}
        if location_field:
            values["at"] = selectors.related_value(model, location_field)
        latest = attention.order_by("-pk").values("pk")[:FAILURES_READ]
        rows = list(model.objects.filter(pk__in=latest).values(**values)
                    .annotate(n=Count("pk"), total=total).order_by("-n"))
        filters = {f"{k}__exact": int(v) if isinstance(v, bool) else v for k, v in handler.attention_filter.items()}
        for row in rows:
            where = row.get("at")
            groups.append({"kind": handler.kind, "cause": (row["cause"] or "no error recorded").strip(),
                           "count": row["n"], "where": location_labels.get(where, "") if where else "",
                           "url": selectors.changelist_url(model, **filters, **(
                               {f"{location_field}__id__exact": where} if where else {}))})
        grouped = sum(row["n"] for row in rows)
        if rows and rows[0]["total"] > grouped:
            partial.append({"kind": handler.kind, "total": rows[0]["total"], "grouped": grouped,
                            "url": selectors.changelist_url(model, **filters)})
    return sorted(groups, key=lambda g: -g["count"]), partial


SAMPLE_FIELDS = ("route_id", "hop", "start", "succeeded", "failed_attempts", "bytes_done", "queued_bytes")


def route_samples(resolution: str, since: datetime) -> list:
    """Samples as named tuples: a day of 5-minute samples is a thousand rows, too many to build as models."""
    return list(RouteSample.objects.filter(resolution=resolution, start__gte=since).order_by("start")
                .values_list(*SAMPLE_FIELDS, named=True))


def dashboard_context(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    routes = selectors.routes()
    queues = route_queues()
    recent = route_samples(Resolution.FIVE_MINUTES, now - timedelta(hours=24))
    week = route_samples(Resolution.HOUR, now - timedelta(days=7))
    tables = selectors.job_tables(now)
    site_states = selectors.sites(now, tables=tables)
    location_states = selectors.locations()
    location_labels = {s.location.pk: str(s.location) for s in location_states}
    oldest = selectors.oldest_unsafe_package()
    failures, failures_partial = failure_causes(location_labels)
    return {
        "now": now,
        "routes": route_rows(now, routes, queues, recent),
        "route_charts": route_charts(now, routes, recent, week),
        "sites": site_states,
        "locations": location_states,
        "buffer_charts": buffer_charts(now, location_states),
        "safety": safety(now),
        "oldest_unsafe": oldest,
        "oldest_unsafe_age": human_duration((now - oldest.registered_at).total_seconds())
        if oldest and oldest.registered_at else None,
        "failures": failures,
        "failures_partial": failures_partial,
        "stuck": stuck.stuck_work(now, site_states, routes, queues, tables),
    }
