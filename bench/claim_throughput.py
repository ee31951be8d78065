"""Claim throughput: the work API under gunicorn on PostgreSQL versus a raw-SQL loop on the same database.

    .venv/bin/python bench/claim_throughput.py [--database-url postgres://postgres@127.0.0.1:5432/opsdb_bench]

Creates (drops first) the database, migrates it, starts gunicorn on a free local port, then for
N = 1, 8, 32 concurrent workers runs claim → complete cycles on archive jobs:
- app: threads with a requests.Session each, POST /api/v1/work/claim/ then .../complete/;
- raw SQL: threads with a psycopg connection each, the same claim (SELECT … FOR UPDATE SKIP
  LOCKED, UPDATE to ACTIVE with a lease) and the same completing UPDATE, nothing else.
Then batches: at N = 8 and 32, each thread claims up to 20 jobs at once (``max_jobs``) and reports
them in one request (work/report/); printed as jobs per second.
Prints cycles per second, p50/p99 latency of a cycle and the app/raw-SQL ratio, and the CPU time
gunicorn's workers spent per app cycle (Linux /proc): on a shared machine the rates follow the
load of other processes, the CPU per cycle much less so. The app does
more per cycle than the raw loop (authentication, validation, the state log, the DataTransferLog
line, the archive copy record, two HTTP round trips); the ratio is the price of all of it.
``--client http.client`` drives the same requests with the standard library's client instead of
requests: on a 2-CPU machine the load generator's own CPU (printed per cycle) is taken from the
server and the database, so both figures should be given. ``--workers``/``--threads`` set gunicorn's.
Not a test: it prints figures.
"""

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from json import dumps
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
CYCLES = {1: 300, 8: 1200, 32: 2400}  # per run; enough to be steady, small enough for ~2 minutes in all
BATCH = 20
BATCH_CYCLES = {8: 200, 32: 480}  # batches of BATCH jobs per run
GUNICORN_WORKERS, GUNICORN_THREADS = 3, 8
server_config = {"workers": GUNICORN_WORKERS, "threads": GUNICORN_THREADS, "client": "requests"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/opsdb_bench")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply the cycles per run.")
    parser.add_argument("--workers", type=int, default=GUNICORN_WORKERS, help="gunicorn worker processes.")
    parser.add_argument("--threads", type=int, default=GUNICORN_THREADS, help="gunicorn threads per worker.")
    parser.add_argument("--client", choices=["requests", "http.client"], default="requests",
                        help="The load generator's HTTP client: requests (as workers use), or the standard library's "
                        "http.client, lighter on the CPU that the clients share with the server and the database.")
    args = parser.parse_args()
    server_config.update(workers=args.workers, threads=args.threads, client=args.client)
    cycles = {n: max(n, int(c * args.scale)) for n, c in CYCLES.items()}
    batch_cycles = {n: max(n, int(c * args.scale)) for n, c in BATCH_CYCLES.items()}

    env = bench_env(args.database_url)
    recreate_database(args.database_url)
    run_manage(env, "migrate", "--no-input", "-v", "0")
    run_manage(env, "collectstatic", "--no-input", "-v", "0")  # production settings: gunicorn needs them
    token = run_manage(env, "create_worker", "bench-worker").strip()
    os.environ.update(env)
    fill = JobFiller()

    port = free_port()
    server = start_gunicorn(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        fill(200)
        run_app(base, token, 8, 200)  # warm-up: connections, imports, caches
        rows = []
        for n, count in cycles.items():
            fill(count)
            cpu_before, client_before = server_cpu_seconds(server), time.process_time()
            app = run_app(base, token, n, count)
            app["server_cpu"] = server_cpu_seconds(server) - cpu_before
            app["client_cpu"] = time.process_time() - client_before
            fill(count)
            raw = run_raw(args.database_url, n, count)
            rows.append((n, app, raw))
        batch_rows = []
        for n, count in batch_cycles.items():
            fill(count * BATCH)
            cpu_before, client_before = server_cpu_seconds(server), time.process_time()
            run = run_app_batch(base, token, n, count)
            run["server_cpu"] = server_cpu_seconds(server) - cpu_before
            run["client_cpu"] = time.process_time() - client_before
            batch_rows.append((n, run))
    finally:
        server.terminate()
        server.wait(timeout=30)
    report(rows)
    report_batches(batch_rows)
    report_targets(rows, batch_rows)


def static_root() -> Path:
    return ROOT / "var" / "bench-static"


def bench_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "opsdb.settings", "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40), "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "600", "PYTHONWARNINGS": "ignore::UserWarning",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend", "STATIC_ROOT": str(static_root()),
    }


def recreate_database(database_url: str) -> None:
    url = urlparse(database_url)
    name = url.path.lstrip("/")
    admin_url = urlunparse(url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def run_manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


class JobFiller:
    """Adds pending archive jobs (raw package at a buffer → the site's archive) through the ORM."""

    def __init__(self):
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.utils import timezone

        from opsdb.models import DataLocation, Instrument, Observation, Site

        site = Site.objects.create(name="bench")
        self.buffer = DataLocation.objects.create(site=site, name="buffer", location_type="BUFFER",
                                                  base_path="/data/buffer")
        self.archive = DataLocation.objects.create(site=site, name="archive", location_type="LONG_TERM_ARCHIVE",
                                                   base_path="/data/archive")
        now = timezone.now()
        self.observation = Observation.objects.create(
            obs_id="bench", instrument=Instrument.objects.create(name="bench"), target_name="bench", start_time=now,
            end_time=now,
        )
        self.made = 0

    def __call__(self, count: int) -> None:
        from django.db import connection

        from opsdb.models import RawDataPackage
        from staging.models import LongTermArchiveTransfer

        raws = RawDataPackage.objects.bulk_create(
            RawDataPackage(name=f"raw-{self.made + i:07d}.tar", observation=self.observation, size=1,
                           checksum=f"{self.made + i:064x}")
            for i in range(count)
        )
        LongTermArchiveTransfer.objects.bulk_create(
            LongTermArchiveTransfer(raw_package=raw, source_location=self.buffer, destination_location=self.archive)
            for raw in raws
        )
        self.made += count
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE staging_longtermarchivetransfer")
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen(
        [str(gunicorn), "opsdb.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(server_config["workers"]), "-k", "gthread",
         "--threads", str(server_config["threads"]), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """User + system CPU seconds of gunicorn's worker processes so far; nan without Linux /proc."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, …
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == server.pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            found = True
    return total if found else float("nan")


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 120  # a loaded machine boots three Django workers slowly
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health/", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still booting its workers
            pass
        time.sleep(0.2)
    sys.exit("gunicorn did not come up")


def run_threads(n: int, count: int, cycle_factory) -> dict:
    """``n`` threads share ``count`` cycles; each thread's ``cycle()`` returns False when no job was left."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = [count]
    lock = threading.Lock()

    def worker(cycle):
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            try:
                if not cycle():
                    errors.append("no job to claim")
                    return
            except Exception as exc:  # a benchmark reports failures, it does not stop at the first
                errors.append(repr(exc))
                return
            latencies.append(time.perf_counter() - start)

    cycles = [cycle_factory(i) for i in range(n)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in cycles]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"cycles": len(latencies), "elapsed": elapsed, "latencies": latencies, "errors": errors}


class LightResponse:
    def __init__(self, status: int, body: bytes):
        self.status_code, self.body = status, body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.body[:200]!r}")

    def json(self):
        return json.loads(self.body)


class LightSession:
    """The part of ``requests.Session`` the cycles use, over one kept-alive ``http.client`` connection."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.connection: http.client.HTTPConnection | None = None

    def post(self, url: str, json: dict) -> LightResponse:
        parts = urlparse(url)
        if self.connection is None:
            self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        body = dumps(json).encode()
        self.connection.request("POST", parts.path, body=body,
                                headers={**self.headers, "Content-Type": "application/json"})
        response = self.connection.getresponse()
        return LightResponse(response.status, response.read())


def new_session():
    return LightSession() if server_config["client"] == "http.client" else requests.Session()


def run_app(base: str, token: str, n: int, count: int) -> dict:
    def factory(i: int):
        session = new_session()
        session.headers["Authorization"] = f"Token {token}"

        def cycle() -> bool:
            claim = session.post(f"{base}/api/v1/work/claim/", json={"worker": f"bench-{i}", "kinds": ["archive"]})
            if claim.status_code == 204:
                return False
            claim.raise_for_status()
            job = claim.json()
            done = session.post(f"{base}/api/v1/work/archive/{job['id']}/complete/",
                                json={"lease_token": job["lease_token"], "checksum": job["raw_package"]["checksum"]})
            done.raise_for_status()
            return True

        return cycle

    return run_threads(n, count, factory)


def run_app_batch(base: str, token: str, n: int, count: int) -> dict:
    """``count`` cycles of: claim up to BATCH jobs, report them all complete in one request."""
    jobs_done = []

    def factory(i: int):
        session = new_session()
        session.headers["Authorization"] = f"Token {token}"

        def cycle() -> bool:
            claim = session.post(f"{base}/api/v1/work/claim/",
                                 json={"worker": f"bench-{i}", "kinds": ["archive"], "max_jobs": BATCH})
            if claim.status_code == 204:
                return False
            claim.raise_for_status()
            jobs = claim.json()["jobs"]
            done = session.post(f"{base}/api/v1/work/report/", json={"reports": [
                {"kind": "archive", "id": job["id"], "outcome": "complete", "lease_token": job["lease_token"],
                 "checksum": job["raw_package"]["checksum"]} for job in jobs]})
            done.raise_for_status()
            codes = {item["code"] for item in done.json()["results"]}
            if codes != {200}:
                raise RuntimeError(f"batch report answered {codes}")
            jobs_done.append(len(jobs))
            return True

        return cycle

    run = run_threads(n, count, factory)
    run["jobs"] = sum(jobs_done)
    return run


RAW_CLAIM = """
SELECT id FROM staging_longtermarchivetransfer
WHERE status = 'PENDING' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
RAW_TAKE = """
UPDATE staging_longtermarchivetransfer SET status = 'ACTIVE', lease_token = %s, lease_holder = %s,
  lease_expires_at = now() + interval '600 seconds', claimed_at = now(), heartbeat_at = now(), updated_at = now()
WHERE id = %s
"""
RAW_COMPLETE = """
UPDATE staging_longtermarchivetransfer SET status = 'COMPLETED', finished_at = now(), lease_expires_at = NULL,
  updated_at = now()
WHERE id = %s AND status = 'ACTIVE' AND lease_token = %s AND lease_expires_at >= now()
"""


def run_raw(database_url: str, n: int, count: int) -> dict:
    connections = []

    def factory(i: int):
        conn = psycopg.connect(database_url)
        connections.append(conn)

        def cycle() -> bool:
            token = secrets.token_urlsafe(24)
            with conn.transaction():
                row = conn.execute(RAW_CLAIM).fetchone()
                if row is None:
                    return False
                conn.execute(RAW_TAKE, (token, f"raw-{i}", row[0]))
            with conn.transaction():
                if conn.execute(RAW_COMPLETE, (row[0], token)).rowcount != 1:
                    raise RuntimeError(f"lost the lease on {row[0]}")
            return True

        return cycle

    try:
        return run_threads(n, count, factory)
    finally:
        for conn in connections:
            conn.close()


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def cpu_per(run: dict, key: str, count: int) -> str:
    return f"{run[key] * 1000 / count:>7.2f}" if key in run and count else f"{'-':>7}"


def report(rows) -> None:
    print(f"claim → complete cycles on PostgreSQL; app = gunicorn {server_config['workers']} workers × "
          f"{server_config['threads']} threads, {os.cpu_count()} CPUs; CPU ms = gunicorn workers' CPU per app cycle; "
          f"client ms = the load generator's own CPU ({server_config['client']}, threads) per cycle, on the same cores")
    print(f"{'N':>3} {'path':<8} {'cycles':>7} {'cycles/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7} {'client':>7}"
          "  errors")
    for n, app, raw in rows:
        for name, run in (("app", app), ("raw SQL", raw)):
            rate = run["cycles"] / run["elapsed"]
            print(f"{n:>3} {name:<8} {run['cycles']:>7} {rate:>9.1f} {percentile(run['latencies'], 50) * 1000:>8.2f} "
                  f"{percentile(run['latencies'], 99) * 1000:>8.2f} {cpu_per(run, 'server_cpu', run['cycles'])} "
                  f"{cpu_per(run, 'client_cpu', run['cycles'])}  {len(run['errors'])} {run['errors'][:2]}")
        ratio = (app["cycles"] / app["elapsed"]) / (raw["cycles"] / raw["elapsed"])
        print(f"{n:>3} app/raw throughput ratio: {ratio:.3f}")


def report_batches(rows) -> None:
    print(f"\nbatches: claim up to {BATCH} jobs (max_jobs) → one batch report; CPU ms = gunicorn workers' CPU per job, "
          "client ms = the load generator's per job")
    print(f"{'N':>3} {'batches':>8} {'jobs':>7} {'jobs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7} {'client':>7}"
          "  errors")
    for n, run in rows:
        rate = run["jobs"] / run["elapsed"]
        p50, p99 = (percentile(run["latencies"], q) * 1000 for q in (50, 99))
        print(f"{n:>3} {run['cycles']:>8} {run['jobs']:>7} {rate:>9.1f} {p50:>8.2f} {p99:>8.2f} "
              f"{cpu_per(run, 'server_cpu', run['jobs'])} {cpu_per(run, 'client_cpu', run['jobs'])}  "
              f"{len(run['errors'])} {run['errors'][:2]}")


def report_targets(rows, batch_rows) -> None:
    single = {n: (app, raw) for n, app, raw in rows}
    ratio_8 = (single[8][0]["cycles"] / single[8][0]["elapsed"]) / (single[8][1]["cycles"] / single[8][1]["elapsed"])
    p99_32 = percentile(single[32][0]["latencies"], 99) * 1000
    batch_32 = dict(batch_rows)[32]
    rate_32 = batch_32["jobs"] / batch_32["elapsed"]
    print(f"\nclaim_throughput: single app/raw at 8 workers {ratio_8:.3f} (target >= 0.25: "
          f"{'met' if ratio_8 >= 0.25 else 'missed'}); single p99 at 32 workers {p99_32:.0f} ms (target < 100: "
          f"{'met' if p99_32 < 100 else 'missed'}); batches of {BATCH} at 32 workers {rate_32:.0f} jobs/s "
          f"(target >= 2000: {'met' if rate_32 >= 2000 else 'missed'})")


if __name__ == "__main__":
    main()
