"""The admin, the scientists' pages, the API lists and a claim at observatory scale (not a test).

    .venv/bin/python bench/admin_scale.py                 # 10^3 and 10^6 rows
    .venv/bin/python bench/admin_scale.py --huge          # 10^3 and 10^7 rows (about ten times longer)
    .venv/bin/python bench/admin_scale.py --reuse         # keep databases already built (migrations applied)
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/opsdb_bench_scale (default): the databases
    are <name>_1000 and <name>_<rows>; they are dropped and built again unless --reuse finds them.

"Rows" is the number of raw data packages; around them, five years of the telescope in the same
proportions: 3 files each, 2 copies each (the site's buffer, the archive), one archive transfer each,
one bundle per 10 packages with 2 transfers, 2 unpacks and 2 bundle copies, one state-log line and
one transfer-log line per package, one observation per 10 packages, a staged file access record
per package, and 1 staging job (10 packages) per 1,000. Everything is built with set-based SQL
(``INSERT … SELECT … FROM generate_series``), then VACUUM ANALYZE.

Then, in a child process per database (same code, same page list), it times with Django's test
client (no HTTP server, so the figures are the application's and the database's): the admin index;
every admin changelist plain, searched (a value of its first search field), with each list filter
(its first choice, as an operator clicks it), with the first date-hierarchy link, and page 5000 (the
last page when there are fewer); every change page; the scientists' pages; every API list (and
``?status=`` on the job lists); and a claim. Each page is measured at 10^3 rows and right after at
the large size (two child processes, one per database), so that a change of the machine's load
during the run weighs on both sides of its ratio. Printed per page: the query count, p50/p95 at
10^3 rows and at the large size, and the ratio of the p95s. The machine is shared: run it when it
is quiet, and read the ratios (measured in the same run) before the absolute times.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/opsdb_bench_scale"
SMALL = 1000
TARGET_MS = 300.0
TARGET_RATIO = 2.0
BENCH_TOKEN = "opsdb-bench-worker-token"  # a throw-away database's worker: a fixed token is fine
FIVE_YEARS = 5 * 365 * 86400  # seconds of history the rows spread over
BUILT_MARK = "opsdb_bench_built"  # a one-row table: the size the database was built for


# --- databases -----------------------------------------------------------------------------------

def database_url(base: str, rows: int) -> str:
    parsed = urlparse(base)
    return parsed._replace(path=f"{parsed.path.rstrip('/')}_{rows}").geturl()


def admin_connection(url: str):
    import psycopg

    return psycopg.connect(urlparse(url)._replace(path="/postgres").geturl(), autocommit=True)


def built_size(url: str) -> int | None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return None
    with psycopg.connect(url) as conn:
        try:
            return conn.execute(f"SELECT rows FROM {BUILT_MARK}").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return None


def recreate(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": env.get("SECRET_KEY", "bench-only-" + "x" * 40),
        "ALLOWED_HOSTS": "testserver", "SECURE_SSL_REDIRECT": "0", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "opsdb.settings", "DB_CONN_MAX_AGE": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    })
    return env


def run_child(url: str, *args: str) -> str:
    command = [sys.executable, __file__, *args, "--database", url]
    done = subprocess.run(command, env=child_env(url), check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


# --- building (child process) --------------------------------------------------------------------

def setup_django() -> None:
    import django
    from django.conf import settings

    # Pages are rendered without collectstatic: plain static URLs instead of the manifest's.
    storage = "django.contrib.staticfiles.storage.StaticFilesStorage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": storage}}
    django.setup()


def sql(statement: str, params=()) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def insert(model, selected: dict[str, str], from_sql: str, *, now) -> int:
    """INSERT … SELECT of ``model`` rows; ``%`` in the SQL is the modulo operator."""
    from opsdb.planning import insert_from_select

    t0 = time.perf_counter()
    selected = {column: expression.replace("%", "%%") for column, expression in selected.items()}
    made = insert_from_select(model, selected, from_sql.replace("%", "%%"), [], now=now)
    print(f"  {model._meta.label:<36} {made:>11,} rows  {time.perf_counter() - t0:6.1f} s", flush=True)
    return made


def build(rows: int) -> None:
    """The topology with the ORM, then every large table with one INSERT … SELECT each."""
    from django.core.management import call_command
    from django.db import connection

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    ids = build_topology()
    build_catalogue(rows, ids)
    build_jobs(rows, ids)
    build_logs(rows, ids)
    sql(f"CREATE TABLE {BUILT_MARK} (rows bigint)")
    sql(f"INSERT INTO {BUILT_MARK} VALUES (%s)", [rows])
    connection.close()
    t1 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"  built {rows:,} rows in {t1 - t0:.0f} s, VACUUM ANALYZE {time.perf_counter() - t1:.0f} s", flush=True)


def build_topology() -> dict:
    from django.contrib.auth.models import Group, User

    from opsdb import roles
    from opsdb.choices import LocationType
    from opsdb.models import ApiToken, DataLocation, Instrument, Site, WorkerProfile
    from opsdb.tokens import token_digest
    from transfers.choices import RouteType
    from transfers.models import DataTransferRoute

    sites = {name: Site.objects.create(name=name, title=name.capitalize()) for name in ("ccat", "cologne", "cornell")}
    locs = {}
    for site, loc_name, kind in [
        ("ccat", "buffer", LocationType.BUFFER), ("cologne", "buffer", LocationType.BUFFER),
        ("cologne", "archive", LocationType.LONG_TERM_ARCHIVE), ("cologne", "processing", LocationType.PROCESSING),
        ("cornell", "buffer", LocationType.BUFFER), ("cornell", "archive", LocationType.LONG_TERM_ARCHIVE),
    ]:
        locs[f"{site}:{loc_name}"] = DataLocation.objects.create(
            site=sites[site], name=loc_name, location_type=kind, base_path=f"/data/{site}/{loc_name}"
        ).pk
    direct = DataTransferRoute.objects.create(origin_site=sites["ccat"], destination_site=sites["cologne"],
                                              method="bbcp")
    relay = DataTransferRoute.objects.create(origin_site=sites["ccat"], destination_site=sites["cornell"],
                                             method="bbcp", route_type=RouteType.RELAY, relay_site=sites["cologne"])
    instruments = [Instrument.objects.create(name=n).pk for n in ("Prime-Cam", "CHAI", "Mod-Cam")]
    operator = User.objects.create_user("bench-operator", is_staff=True)
    operator.groups.add(Group.objects.get(name=roles.OPERATORS))
    scientist = User.objects.create_user("bench-scientist")
    scientist.groups.add(Group.objects.get(name=roles.SCIENTISTS))
    worker = User.objects.create_user("bench-worker")
    worker.groups.add(Group.objects.get(name=roles.WORKERS))
    WorkerProfile.objects.create(user=worker)
    # Tokens are stored as digests only: the bench's worker has a fixed token the measuring child knows.
    ApiToken.objects.create(user=worker, name="bench", prefix=BENCH_TOKEN[:8], digest=token_digest(BENCH_TOKEN))
    return {"locs": locs, "instruments": instruments, "direct": direct.pk, "relay": relay.pk,
            "scientist": scientist.pk, "operator": operator.pk}


TARGETS = ("Orion KL", "Sgr B2", "W43", "NGC 253", "M83", "Cas A", "IC 342", "NGC 1068", "G305", "Carina")


def build_catalogue(rows: int, ids: dict) -> None:
    from django.utils import timezone

    from opsdb.models import (
        Observation,
        RawDataFile,
        RawDataFileCopy,
        RawDataPackage,
        RawDataPackageCopy,
    )

    now = timezone.now()
    stamp = f"'{now.isoformat()}'::timestamptz"
    locs = ids["locs"]
    n_obs = max(rows // 10, 1)
    five_years = FIVE_YEARS
    inst = ids["instruments"]
    insert(Observation, {
        "obs_id": "'obs-' || lpad(i::text, 8, '0')",
        "instrument_id": f"(ARRAY{inst})[1 + i % {len(inst)}]",
        "target_name": f"(ARRAY{list(TARGETS)})[1 + i % {len(TARGETS)}]",
        "start_time": f"{stamp} - make_interval(secs => ({n_obs} - i) * {five_years / n_obs})",
        "end_time": f"{stamp} - make_interval(secs => ({n_obs} - i) * {five_years / n_obs}) + interval '1 hour'",
    }, f"FROM generate_series(1, {n_obs}) i", now=now)
    insert(RawDataPackage, {
        "name": "'raw-' || lpad(i::text, 8, '0') || '.tar'",
        "observation_id": "(SELECT min(id) FROM opsdb_observation) + (i - 1) / 10",
        "size": "1000000000 + (i::bigint * 7919) % 9000000000",
        "checksum": "md5(i::text) || md5((i + 1)::text)",
        "created_at": f"{stamp} - make_interval(secs => ({rows} - i) * {five_years / rows})",
    }, f"FROM generate_series(1, {rows}) i", now=now)
    insert(RawDataFile, {
        "package_id": "p.id", "relative_path": "'obs/' || p.name || '/scan-' || f || '.fits'",
        "size": "p.size / 3", "checksum": "md5(p.name || f)",
    }, "FROM opsdb_rawdatapackage p CROSS JOIN generate_series(1, 3) f", now=now)
    for loc, status in (("ccat:buffer", "CASE WHEN p.id % 10 = 0 THEN 'PRESENT' ELSE 'DELETED' END"),
                        ("cologne:archive", "'PRESENT'")):
        insert(RawDataPackageCopy, {
            "raw_package_id": "p.id", "location_id": str(locs[loc]), "status": status,
            "path": "'raw/' || p.name", "checksum_verified": "p.checksum", "verified_at": "p.created_at",
            "created_at": "p.created_at",
        }, "FROM opsdb_rawdatapackage p", now=now)
    insert(RawDataFileCopy, {
        "raw_file_id": "f.id", "location_id": str(locs["cologne:processing"]),
        "status": "CASE WHEN f.id % 20 = 0 THEN 'PRESENT' ELSE 'DELETED' END",
        "path": "'staged/' || f.relative_path", "expires_at": f"{stamp} + interval '14 days'",
    }, "FROM opsdb_rawdatafile f WHERE f.id % 3 = 0", now=now)


def build_jobs(rows: int, ids: dict) -> None:
    from django.utils import timezone

    from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage
    from transfers.models import (
        DataTransfer,
        DataTransferPackage,
        DataTransferPackageCopy,
        DataTransferPackageMember,
        DataTransferUnpack,
    )

    now = timezone.now()
    stamp = f"'{now.isoformat()}'::timestamptz"
    locs = ids["locs"]
    n_bundles = max(rows // 10, 1)
    # Most work is long done; some is failed, pending or under way, like a running system.
    status = ("CASE WHEN {k} % 100 = 1 THEN 'FAILED' WHEN {k} % 100 = 2 THEN 'PENDING' "
              "WHEN {k} % 100 = 3 THEN 'ACTIVE' ELSE '{done}' END")
    job = {
        "attempts": "CASE WHEN {k} % 100 = 1 THEN 3 ELSE 0 END",
        "last_error": "CASE WHEN {k} % 100 = 1 THEN 'bbcp: connection reset by peer (attempt 3)' ELSE '' END",
        "lease_holder": "CASE WHEN {k} % 100 IN (1, 3) THEN 'cologne-dtn-' || {k} % 4 ELSE '' END",
        "lease_expires_at": "CASE WHEN {k} % 100 = 3 THEN {stamp} + interval '1 hour' END",
        "finished_at": "CASE WHEN {k} % 100 > 3 OR {k} % 100 = 0 THEN {created} + interval '1 hour' END",
    }

    def job_columns(key: str, created: str, done: str) -> dict[str, str]:
        cols = {name: expr.format(k=key, created=created, stamp=stamp) for name, expr in job.items()}
        return {"status": status.format(k=key, done=done), **cols, "created_at": created, "updated_at": created}

    insert(DataTransferPackage, {
        "name": "'dtp-ccat-' || lpad(i::text, 8, '0') || '.tar'", "origin_location_id": str(locs["ccat:buffer"]),
        "payload_size": "50000000000", "size": "50000000000", "checksum": "md5(i::text)",
        "archive_path": "'bundles/dtp-ccat-' || lpad(i::text, 8, '0') || '.tar'",
        **job_columns("i", f"{stamp} - make_interval(secs => ({n_bundles} - i) * {FIVE_YEARS / n_bundles})",
                      "COMPLETED"),
    }, f"FROM generate_series(1, {n_bundles}) i", now=now)
    insert(DataTransferPackageMember, {
        "transfer_package_id": "(SELECT min(id) FROM transfers_datatransferpackage) + (p.id - m.first) / 10",
        "raw_package_id": "p.id",
    }, "FROM opsdb_rawdatapackage p, (SELECT min(id) AS first FROM opsdb_rawdatapackage) m", now=now)
    for loc in ("ccat:buffer", "cologne:buffer"):
        insert(DataTransferPackageCopy, {
            "transfer_package_id": "b.id", "location_id": str(locs[loc]), "status": "'PRESENT'",
            "path": "b.archive_path", "checksum_verified": "b.checksum", "created_at": "b.created_at",
        }, "FROM transfers_datatransferpackage b", now=now)
    for hop, (origin, destination, route) in enumerate(
        [("ccat:buffer", "cologne:buffer", ids["direct"]), ("cologne:buffer", "cornell:buffer", ids["relay"])], 1
    ):
        insert(DataTransfer, {
            "transfer_package_id": "b.id", "route_id": str(route), "origin_location_id": str(locs[origin]),
            "destination_location_id": str(locs[destination]), "method": "'bbcp'", "hop": str(hop),
            "destination_path": "b.archive_path",
            **job_columns("b.id", "b.created_at + interval '1 hour'", "TRANSFERRED"),
        }, "FROM transfers_datatransferpackage b", now=now)
    insert(DataTransferUnpack, {
        "transfer_id": "t.id", **job_columns("t.id", "t.created_at + interval '2 hours'", "UNPACKED"),
    }, "FROM transfers_datatransfer t", now=now)
    insert(LongTermArchiveTransfer, {
        "raw_package_id": "p.id", "source_location_id": str(locs["cologne:buffer"]),
        "destination_location_id": str(locs["cologne:archive"]),
        "requires_intervention": "p.id % 100 = 1",
        **job_columns("p.id", "p.created_at + interval '3 hours'", "COMPLETED"),
    }, "FROM opsdb_rawdatapackage p", now=now)
    n_staging = max(rows // 1000, 1)
    insert(StagingJob, {
        "owner_id": str(ids["scientist"]), "destination_location_id": str(locs["cologne:processing"]),
        "note": "'reduction run ' || i", "expires_at": f"{stamp} + interval '14 days'",
        **job_columns("i", f"{stamp} - make_interval(secs => ({n_staging} - i) * 3600)", "READY"),
    }, f"FROM generate_series(1, {n_staging}) i", now=now)
    insert(StagingJobPackage, {
        "job_id": "j.id", "raw_package_id": "(SELECT min(id) FROM opsdb_rawdatapackage) + (j.id::bigint * 997 + k) "
        f"% {rows}", "source_location_id": str(locs["cologne:archive"]), "state": "'STAGED'",
        "bytes_staged": "1000000000",
    }, "FROM staging_stagingjob j CROSS JOIN generate_series(1, 10) k", now=now)


def build_logs(rows: int, ids: dict) -> None:
    """One state-log line and one transfer-log line per package, spread over the job kinds."""
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone
    from django_fsm_log.models import StateLog

    from opsdb.models import DataTransferLog
    from staging.models import LongTermArchiveTransfer
    from transfers.models import DataTransfer

    now = timezone.now()
    archive = ContentType.objects.get_for_model(LongTermArchiveTransfer).pk
    transfer = ContentType.objects.get_for_model(DataTransfer).pk
    insert(StateLog, {
        "timestamp": "a.created_at + interval '1 hour'", "source_state": "'ACTIVE'", "state": "a.status",
        "transition": "CASE WHEN a.status = 'FAILED' THEN 'fail' ELSE 'complete' END",
        "content_type_id": str(archive), "object_id": "a.id", "by_id": "NULL",
        "description": "'by ' || coalesce(nullif(a.lease_holder, ''), 'cologne-dtn-1')",
    }, "FROM staging_longtermarchivetransfer a", now=now)
    insert(DataTransferLog, {
        "content_type_id": f"CASE WHEN a.id % 5 = 0 THEN {transfer} ELSE {archive} END", "object_id": "a.id",
        "level": "CASE WHEN a.id % 100 = 1 THEN 'ERROR' ELSE 'INFO' END",
        "message": "CASE WHEN a.id % 100 = 1 THEN 'bbcp: connection reset by peer' "
                   "ELSE 'copied ' || a.raw_package_id || ' in ' || (a.id % 600) || ' s' END",
        "log_path": "'/var/log/opsdb-worker/' || a.id || '.log'", "worker": "'cologne-dtn-' || a.id % 4",
        "attempt": "1", "created_at": "a.created_at + interval '1 hour'",
    }, "FROM staging_longtermarchivetransfer a", now=now)


# --- measuring (child process) -------------------------------------------------------------------

class FilterLinks(HTMLParser):
    """The first choice of each list filter (after "All") and the first date-hierarchy link."""

    def __init__(self):
        super().__init__()
        self.filters: list[tuple[str, str]] = []
        self.hierarchy: str | None = None
        self._title: str | None = None
        self._links = 0
        self._in_toplinks = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and "data-filter-title" in attrs:
            self._title, self._links = attrs["data-filter-title"], 0
        elif tag == "nav" and "toplinks" in (attrs.get("class") or ""):
            self._in_toplinks = True
        elif tag == "a" and self._title is not None:
            self._links += 1
            if self._links == 2:
                self.filters.append((self._title, attrs.get("href", "")))
        elif tag == "a" and self._in_toplinks and self.hierarchy is None:
            self.hierarchy = attrs.get("href")

    def handle_endtag(self, tag):
        if tag == "details":
            self._title = None
        elif tag == "nav":
            self._in_toplinks = False


def middle_row(model):
    from django.db.models import Max, Min

    bounds = model._default_manager.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return None
    middle = (bounds["low"] + bounds["high"]) // 2 if isinstance(bounds["low"], int) else bounds["low"]
    return model._default_manager.filter(pk__gte=middle).order_by("pk").first()


def search_term(model, model_admin) -> str | None:
    if not model_admin.search_fields:
        return None
    row = middle_row(model)
    field = model_admin.search_fields[0].lstrip("^=@")
    if row is None:
        return "x"
    value = model._default_manager.filter(pk=row.pk).values_list(field, flat=True).first()
    return str(value) if value not in (None, "") else "x"


def pages(client, scientist_client, worker_headers) -> list[tuple[str, str, object]]:
    """(label, method, target) of every page measured; the same list for every database size."""
    from django.contrib import admin
    from django.urls import get_resolver, reverse

    found = [("admin index", "GET", reverse("admin:index"))]
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label):
        meta = model._meta
        label = f"admin {meta.app_label}.{meta.model_name}"
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        found.append((f"{label} list", "GET", url))
        term = search_term(model, model_admin)
        if term:
            found.append((f"{label} search", "GET", (url, {"q": term})))
        links = FilterLinks()
        links.feed(client.get(url, secure=True).content.decode())
        for title, href in links.filters:
            found.append((f"{label} filter {title}", "GET", url + href))
        if links.hierarchy:
            found.append((f"{label} date hierarchy", "GET", url + links.hierarchy))
        rows = model._default_manager.count()
        last = max(1, -(-rows // model_admin.list_per_page))
        if last > 1:
            found.append((f"{label} page 5000", "GET", (url, {"p": min(5000, last)})))
        row = middle_row(model)
        if row is not None:
            found.append((f"{label} change", "GET", reverse(f"admin:{meta.app_label}_{meta.model_name}_change",
                                                              args=[row.pk])))
    found += scientist_pages()
    names = sorted(name for name in get_resolver().reverse_dict if isinstance(name, str) and name.endswith("-list"))
    for name in names:
        url = reverse(name)
        found.append((f"api {url}", "GET", url))
        if name in ("longtermarchivetransfer-list", "datatransfer-list", "datatransferpackage-list",
                    "datatransferunpack-list", "stagingjob-list"):
            found.append((f"api {url}?status=FAILED", "GET", (url, {"status": "FAILED"})))
    found.append(("api claim (archive)", "CLAIM", reverse("work-claim")))
    return found


def scientist_pages() -> list[tuple[str, str, object]]:
    from django.urls import reverse

    from opsdb.models import RawDataPackage
    from staging.models import StagingJob

    find = reverse("staging:find")
    middle = middle_row(RawDataPackage)
    job = StagingJob.objects.order_by("-pk").first()
    found = [
        ("scientist find (newest)", "SCIENTIST", find),
        ("scientist find target", "SCIENTIST", (find, {"target": middle.observation.target_name})),
        ("scientist find package", "SCIENTIST", (find, {"package": middle.name})),
        ("scientist requests", "SCIENTIST", reverse("staging:request-list")),
    ]
    if job:
        found.append(("scientist request detail", "SCIENTIST", reverse("staging:request-detail", args=[job.pk])))
    return found


def timed(fetch) -> tuple[float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()  # the log keeps 9,000 queries: once full, a capture would count none
    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        response = fetch()
        seconds = time.perf_counter() - t0
    return seconds * 1000, len(queries), response.status_code


def fetchers(only: str | None) -> dict:
    """label → a function making the page's request, for every page measured (``only``: those matching)."""
    import logging

    from django.contrib.auth.models import User
    from django.test import Client

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the operator's expected 403s are not news
    client, scientist_client = Client(), Client()
    client.force_login(User.objects.get(username="bench-operator"))
    scientist_client.force_login(User.objects.get(username="bench-scientist"))
    headers = {"HTTP_AUTHORIZATION": f"Token {BENCH_TOKEN}"}
    found = {}
    for label, method, target in pages(client, scientist_client, headers):
        if only and not re.search(only, label):
            continue
        url, params = target if isinstance(target, tuple) else (target, {})
        if method == "CLAIM":
            def fetch(url=url):
                return client.post(url, {"worker": "bench-worker", "kinds": ["archive"]},
                                   content_type="application/json", secure=True, **headers)
        else:
            who = scientist_client if method == "SCIENTIST" else client

            def fetch(who=who, url=url, params=params):
                return who.get(url, params, secure=True)
        found[label] = fetch
    return found


def measure_page(label: str, fetch, repeat: int) -> dict:
    timed(fetch)  # warm: caches, prepared plans, the first page of the table in memory
    samples, queries, status = [], 0, 0
    for _ in range(repeat):
        ms, queries, status = timed(fetch)
        samples.append(ms)
    result = {"p50": statistics.median(samples), "p95": percentile(samples, 95), "queries": queries, "status": status}
    print(f"    {label:<70} {result['p95']:8.1f} ms", file=sys.stderr, flush=True)
    return result


def measure(repeat: int, only: str | None) -> dict:
    return {label: measure_page(label, fetch, repeat) for label, fetch in fetchers(only).items()}


def serve(repeat: int, only: str | None) -> None:
    """Print the page labels (a JSON line), then measure each label read from stdin, one JSON line each."""
    found = fetchers(only)
    print(json.dumps(list(found)), flush=True)
    for line in sys.stdin:
        label = line.rstrip("\n")
        print(json.dumps(measure_page(label, found[label], repeat)), flush=True)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# --- the report ----------------------------------------------------------------------------------

def report(small: dict, large: dict, rows: int) -> None:
    header = (f"{'page':<64} {'queries':>9} {'p50 10^3':>9} {'p95 10^3':>9} {f'p50 {rows:.0e}':>9} "
              f"{f'p95 {rows:.0e}':>9} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    under = within = 0
    worst = ("-", 0.0)
    for label, big in large.items():
        base = small.get(label)
        ratio = big["p95"] / base["p95"] if base else float("nan")
        queries = f"{base['queries'] if base else '-'}/{big['queries']}"
        flag = "" if big["p95"] < TARGET_MS else "  > 300 ms"
        flag += "" if ratio <= TARGET_RATIO else "  > 2x"
        if big["status"] >= 400:
            flag += f"  HTTP {big['status']}"
        print(f"{label[:64]:<64} {queries:>9} {fmt(base, 'p50')} {fmt(base, 'p95')} {big['p50']:9.1f} "
              f"{big['p95']:9.1f} {ratio:6.2f}{flag}")
        under += big["p95"] < TARGET_MS
        within += ratio <= TARGET_RATIO
        if big["p95"] > worst[1]:
            worst = (label, big["p95"])
    print(f"within {TARGET_RATIO:.0f}x of 10^3 rows: {within} of {len(large)} pages")
    print(f"admin_scale: {under} of {len(large)} pages under {TARGET_MS:.0f} ms p95 at {rows} rows; "
          f"worst: {worst[0]} {worst[1]:.0f} ms")


def fmt(row: dict | None, key: str) -> str:
    return f"{row[key]:9.1f}" if row else f"{'-':>9}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10**6, help="raw data packages of the large database")
    parser.add_argument("--huge", action="store_true", help="10^7 rows instead of 10^6")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page (after one warm-up)")
    parser.add_argument("--reuse", action="store_true", help="keep databases already built for these sizes")
    parser.add_argument("--only", help="measure only the pages whose label matches this regular expression")
    parser.add_argument("--save", help="also write the figures as JSON to this file")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # child: build this many rows
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # child: print JSON figures
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # child: measure pages asked for
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build is not None:
        setup_django()
        build(args.build)
    elif args.measure:
        setup_django()
        print(json.dumps(measure(args.repeat, args.only)))
    elif args.serve:
        setup_django()
        serve(args.repeat, args.only)
    else:
        orchestrate(args)


def orchestrate(args) -> None:
    """Build (or reuse) both databases, measure each in a child process, print the table."""

    rows = 10**7 if args.huge else args.rows
    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    print(f"admin at scale on {base}_* ({os.cpu_count()} CPUs, shared machine: figures vary with its load)")
    for size in (SMALL, rows):
        url = database_url(base, size)
        if args.reuse and built_size(url) == size:
            print(f"== {size:,} rows: reusing {url}; applying migrations", flush=True)
            migrate(url)
        else:
            print(f"== {size:,} rows: building {url}", flush=True)
            recreate(url)
            t0 = time.perf_counter()
            print(run_child(url, "--build", str(size)), end="", flush=True)
            print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"== measuring ({args.repeat} requests per page), each page at {SMALL:,} rows then at {rows:,}", flush=True)
    figures = interleaved([database_url(base, size) for size in (SMALL, rows)], args)
    figures = dict(zip((SMALL, rows), figures, strict=True))
    if args.save:
        Path(args.save).write_text(json.dumps({str(k): v for k, v in figures.items()}, indent=1))
    print()
    report(figures[SMALL], figures[rows], rows)


def interleaved(urls: list[str], args) -> list[dict]:
    """Each page measured on every database in turn, one child process per database: the machine's
    load, which drifts over the minutes of a run, weighs on both sides of a page's ratio alike."""
    extra = ["--only", args.only] if args.only else []
    children = [subprocess.Popen([sys.executable, __file__, "--serve", "--repeat", str(args.repeat), *extra,
                                  "--database", url], env=child_env(url), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for url in urls]
    labels = [json.loads(child.stdout.readline()) for child in children]
    figures: list[dict] = [{} for _ in children]
    for label in labels[-1]:  # the large database's pages (page 5000 exists only there)
        for child, offered, found in zip(children, labels, figures, strict=True):
            if label in offered:
                child.stdin.write(label + "\n")
                child.stdin.flush()
                found[label] = json.loads(child.stdout.readline())
    for child in children:
        child.stdin.close()
        if child.wait() != 0:
            raise SystemExit(f"a measuring child failed ({child.returncode})")
    return figures


def migrate(url: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "-v", "0"],
                   env=child_env(url), check=True)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


if __name__ == "__main__":
    main()
