"""The operations dashboard, /metrics and the history pass at 10^6 jobs (not a test).

    .venv/bin/python bench/dashboard_scale.py             # 10^3 and 10^6 raw packages
    .venv/bin/python bench/dashboard_scale.py --reuse     # keep databases already built (migrations applied)
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/opsdb_bench_ops (default): the databases are
    <name>_1000 and <name>_<rows>, built like bench/admin_scale.py's (which this script reuses): per raw
    package 3 files, 2 copies, an archive transfer, and per 10 packages a bundle with 2 transfers and
    2 unpacks — about 1.5 jobs per package, 1 % of each kind failed, 1 % pending, 1 % active.

On top of that it writes the history the dashboard plots, as the scheduler would have after 90
days (5-minute samples for 48 hours, hourly samples for 90 days, per route and hop and per
location; hourly time-to-safety histograms), then, in a child process per database, times with
Django's test client (no HTTP server): GET /ops/ as an operator, GET /metrics, and one history
tick of the scheduler (steady state: the transition log read up to its end). Printed: query
counts, p50/p95 at 10^3 and at the large size, and the ratio of the p95s.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import admin_scale as scale  # noqa: E402  (the database builder this benchmark shares)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/opsdb_bench_ops"
SMALL = 1000
TARGET_MS = 300.0


def write_history() -> None:
    """90 days of samples, as the scheduler's history pass keeps them, for every route, hop and location."""
    from django.utils import timezone

    from operations.history import Resolution, bucket_start
    from operations.models import LocationSample, RouteSample, SafetySample

    now = timezone.now()
    RouteSample.objects.all().delete()
    LocationSample.objects.all().delete()
    SafetySample.objects.all().delete()
    for resolution, step, span in ((Resolution.FIVE_MINUTES, "5 minutes", "48 hours"),
                                   (Resolution.HOUR, "1 hour", "90 days")):
        start = bucket_start(now, resolution).isoformat()
        scale.sql(f"""
            INSERT INTO operations_routesample (route_id, hop, resolution, start, queued_jobs, queued_bytes,
                active_jobs, failed_jobs, succeeded, failed_attempts, bytes_done)
            SELECT r.id, h.hop, %s, s, 20 + (extract(epoch FROM s)::bigint / 300) %% 40,
                (20 + (extract(epoch FROM s)::bigint / 300) %% 40) * 50000000000, 4, 1, 3, 1, 150000000000
            FROM transfers_datatransferroute r CROSS JOIN (VALUES (1), (2)) h(hop)
            CROSS JOIN generate_series(%s::timestamptz - interval '{span}', %s::timestamptz, interval '{step}') s
        """, [resolution, start, start])
        scale.sql(f"""
            INSERT INTO operations_locationsample (location_id, resolution, start, used_bytes)
            SELECT l.id, %s, s, 10000000000000 + (extract(epoch FROM s)::bigint / 300) %% 100 * 10000000000
            FROM opsdb_datalocation l
            CROSS JOIN generate_series(%s::timestamptz - interval '{span}', %s::timestamptz, interval '{step}') s
        """, [resolution, start, start])
    scale.sql("""
        INSERT INTO operations_safetysample (start, counts)
        SELECT s, '{"60": 40, "62": 30, "64": 20, "68": 5}'::jsonb
        FROM generate_series(%s::timestamptz - interval '90 days', %s::timestamptz, interval '1 hour') s
    """, [bucket_start(now, Resolution.HOUR).isoformat()] * 2)
    scale.sql("UPDATE opsdb_datalocation SET capacity_bytes = 20000000000000 WHERE capacity_bytes IS NULL")
    # The bundling pass keeps this flag; the builder's bundles are made by SQL, so it is set here.
    scale.sql("UPDATE opsdb_rawdatapackage SET bundled = true WHERE NOT bundled AND id IN "
              "(SELECT raw_package_id FROM transfers_datatransferpackagemember)")
    scale.sql("ANALYZE")


def catch_up() -> float:
    """The history pass reads the built transition log to its end (the backlog of a first start); seconds."""
    from django.db.models import Max
    from django_fsm_log.models import StateLog

    from operations.models import HistoryCursor

    t0 = time.perf_counter()
    last = StateLog.objects.aggregate(last=Max("pk"))["last"] or 0
    HistoryCursor.objects.update_or_create(name="statelog", defaults={"last_id": last})
    return time.perf_counter() - t0


def timed(fetch) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        fetch()
        seconds = time.perf_counter() - t0
    return seconds * 1000, len(queries)


def measure(repeat: int) -> dict:
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.test import Client
    from django.utils import timezone

    from operations.history import record_history
    from operations.usage import fold_changes

    write_history()
    catch_up()
    record_history(now=timezone.now())  # the 5-minute work once: the oldest unsafe package, keep times
    client = Client()
    client.force_login(User.objects.get(username="bench-operator"))

    def dashboard():
        response = client.get("/ops/", secure=True)
        assert response.status_code == 200, response.status_code

    def metrics():
        response = client.get("/metrics", secure=True, REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200, response.status_code

    def tick(with_location_sums: bool):
        from operations.history import bucket_start
        from operations.models import LocationSample, Resolution

        now = timezone.now()
        current = LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES,
                                                start=bucket_start(now, Resolution.FIVE_MINUTES))
        with transaction.atomic():
            if with_location_sums:
                current.delete()  # a new 5-minute bucket: the pass finds the oldest unsafe package, forgets old samples
            elif not current.exists():  # the bucket turned since the history was written: sampled already
                first = LocationSample.objects.values_list("location_id", flat=True).first()
                LocationSample.objects.create(location_id=first, resolution=Resolution.FIVE_MINUTES,
                                              start=bucket_start(now, Resolution.FIVE_MINUTES))
            record_history(now=now)
            transaction.set_rollback(True)  # every timed tick starts from the same history

    results = {}
    for label, fetch, n in (("GET /ops/ (operator)", dashboard, repeat), ("GET /metrics", metrics, repeat),
                            ("history tick, every 30 s", lambda: tick(False), repeat),
                            ("history tick with its 5-minute work", lambda: tick(True),
                             max(repeat // 3, 3)),
                            ("  of which: location changes folded", fold_changes, max(repeat // 3, 3))):
        timed(fetch)  # warm
        samples, queries = [], 0
        for _ in range(n):
            ms, queries = timed(fetch)
            samples.append(ms)
        results[label] = {"p50": statistics.median(samples), "p95": scale.percentile(samples, 95),
                          "queries": queries}
        print(f"    {label:<48} {results[label]['p95']:8.1f} ms", file=sys.stderr, flush=True)
    return results


def report(small: dict, large: dict, rows: int) -> None:
    header = (f"{'what':<48} {'queries':>9} {'p50 10^3':>9} {'p95 10^3':>9} {'p50 large':>10} {'p95 large':>10} "
              f"{'ratio':>6}")
    print(f"large = {rows:,} raw packages (about {int(rows * 1.5):,} jobs)")
    print(header)
    print("-" * len(header))
    for label, big in large.items():
        base = small[label]
        ratio = big["p95"] / base["p95"] if base["p95"] else float("nan")
        flag = "  > 300 ms" if label.startswith("GET") and big["p95"] >= TARGET_MS else ""
        print(f"{label:<48} {base['queries']:>4}/{big['queries']:<4} {base['p50']:9.1f} {base['p95']:9.1f} "
              f"{big['p50']:10.1f} {big['p95']:10.1f} {ratio:6.2f}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10**6, help="raw data packages of the large database")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page (after one warm-up)")
    parser.add_argument("--reuse", action="store_true", help="keep databases already built for these sizes")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # child: print JSON figures
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        scale.setup_django()
        print(json.dumps(measure(args.repeat)))
        return
    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    print(f"operations dashboard at scale on {base}_* ({os.cpu_count()} CPUs, shared machine: figures vary "
          "with its load)")
    for size in (SMALL, args.rows):
        url = scale.database_url(base, size)
        if args.reuse and scale.built_size(url) == size:
            print(f"== {size:,} rows: reusing {url}; applying migrations", flush=True)
            scale.migrate(url)
        else:
            print(f"== {size:,} rows: building {url}", flush=True)
            scale.recreate(url)
            print(scale.run_child(url, "--build", str(size)), end="", flush=True)
    figures = {}
    for size in (SMALL, args.rows):
        url = scale.database_url(base, size)
        print(f"== {size:,} rows: measuring", flush=True)
        command = [sys.executable, __file__, "--measure", "--repeat", str(args.repeat), "--database", url]
        done = subprocess.run(command, env=scale.child_env(url), check=True, stdout=subprocess.PIPE, text=True)
        figures[size] = json.loads(done.stdout)
    print()
    report(figures[SMALL], figures[args.rows], args.rows)


if __name__ == "__main__":
    main()
