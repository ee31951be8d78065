"""Planner at observatory scale (not a test): time, queries and peak memory of each scheduler pass.

    .venv/bin/python bench/planner_scale.py                      # 100,000 then 1,000,000 packages
    .venv/bin/python bench/planner_scale.py --sizes 100000       # just one size
    .venv/bin/python bench/planner_scale.py --sizes 10000000     # 10^7: the archived state, built with SQL
    .venv/bin/python bench/planner_scale.py --archived --sizes 1000000   # the same at 10^6
    .venv/bin/python bench/planner_scale.py --keep-buffers --sizes 1000000   # … buffers never delete
    .venv/bin/python bench/planner_scale.py --idle-only          # idle ticks again on the database left
    .venv/bin/python bench/planner_scale.py --drain-passes 3     # tick 6: stop draining after 3 passes
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/opsdb_bench (default) — the database is
    dropped and re-created for every size.

Up to --passes-up-to packages (default 1,000,000) it registers N raw packages (5 GB each, like five
years of the telescope) with PRESENT copies at ccat:buffer (INSERT … SELECT), on the demo topology
(ccat → cologne DIRECT, ccat → cornell RELAY via cologne, archives at cologne and cornell), then runs:
  tick 1  — a full scheduler tick over the fresh packages (bundling does the work);
  tick 2  — after every bundle was built (its copy at ccat:buffer): routing;
  tick 3  — after every first hop arrived at cologne: unpacking and the relay hops;
  tick 4  — after every bundle was unpacked at cologne (N raw copies): archiving of N packages;
  tick 5  — nothing new: N pending archive transfers, the cost of a tick over N packages of history.
  tick 6  — after every package was archived and verified at cologne and cornell (every hop and
            unpack done), with ccat's and cologne's buffers WHEN_SAFE: 2N raw copies and the bundle
            archives may go. The deletion pass schedules at most DELETION_MAX_COPIES_PER_PASS
            (default 10,000) per location, with their StateLog rows, and makes their delete jobs;
            then (ticks 6.2, 6.3, … — the deletion pass alone, the workers having deleted what the
            pass before scheduled) the passes that drain the backlog, until one schedules nothing
            or --drain-passes were run (the rest is then deleted with SQL). Printed: how many
            passes and their total time.
  tick 7  — after the workers deleted them: nothing to do, over N packages of history whose
            buffer copies are gone (the steady state of a site that deletes; compare with tick 5).
The worker steps in between are simulated with set-based SQL. Tick 5 and tick 7 run --idle-ticks
times (default 3): the first may do the once-per-5-minutes work of the operations history pass; the
others are the steady state; then that pass's parts are timed one by one. Loads with triggers off
skip the triggers that count each location's used bytes: it is counted again after them (not timed
as a tick).

Above --passes-up-to packages, or with --archived, the ticks' own work is not what is measured
(at 10^7 registering and pushing the packages through ticks 1–7 takes hours): the state a site
reaches when five years are done — every package bundled, both hops transferred and unpacked,
archived and verified at both sites, re-read by fixity within the cycle, every buffer copy deleted
by delete jobs, a StateLog row per finished job (``build_archived``) — is built with one
INSERT … SELECT per table (foreign-key checks and triggers off, secondary indexes built after the
rows), its build time printed, and only idle ticks are measured over it, with ``uptime`` load.
Printed per pass: seconds, queries, peak RSS of the process (ru_maxrss, never decreases) and the
Python heap peak during the pass (tracemalloc, only with --tracemalloc: it slows Python code down).
"""

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/opsdb_bench"
PACKAGE_SIZE = 5 * 10**9


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "0"  # DEBUG would keep every SQL text (megabytes of arrays) in memory
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.dummy.EmailBackend")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdb.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def topology():
    from opsdb.choices import LocationType
    from opsdb.models import DataLocation, Instrument, Observation, Site
    from transfers.choices import RouteType
    from transfers.models import DataTransferRoute

    sites = {name: Site.objects.create(name=name) for name in ("ccat", "cologne", "cornell")}
    locs = {}
    for name, s in sites.items():
        kinds = [("buffer", LocationType.BUFFER)]
        if name != "ccat":
            kinds.append(("archive", LocationType.LONG_TERM_ARCHIVE))
        for loc_name, kind in kinds:
            locs[f"{name}:{loc_name}"] = DataLocation.objects.create(
                site=s, name=loc_name, location_type=kind, base_path=f"/data/{name}/{loc_name}"
            )
    DataTransferRoute.objects.create(origin_site=sites["ccat"], destination_site=sites["cologne"], method="bbcp")
    DataTransferRoute.objects.create(origin_site=sites["ccat"], destination_site=sites["cornell"], method="bbcp",
                                     route_type=RouteType.RELAY, relay_site=sites["cologne"])
    instrument = Instrument.objects.create(name="Prime-Cam")
    from django.utils import timezone

    start = timezone.now()
    observation = Observation.objects.create(obs_id="obs-bench", instrument=instrument, target_name="Orion",
                                             start_time=start, end_time=start)
    return locs, observation


def register_packages(n: int, location, observation) -> float:
    """Insert n raw packages and their PRESENT copies at ``location`` (set-based SQL); returns seconds."""
    from django.db import connection
    from django.utils import timezone

    from opsdb.models import RawDataPackage, RawDataPackageCopy
    from opsdb.planning import insert_from_select

    t0 = time.perf_counter()
    now = timezone.now()
    insert_from_select(RawDataPackage, {
        "name": "'raw-' || lpad(i::text, 8, '0') || '.tar'", "observation_id": str(observation.pk),
        "size": str(PACKAGE_SIZE), "checksum": "lpad(to_hex(i), 64, '0')",
    }, f"FROM generate_series(0, {n - 1}) i", [], now=now)
    insert_from_select(RawDataPackageCopy, {
        "raw_package_id": "p.id", "location_id": str(location.pk), "path": "'raw/' || p.name",
    }, "FROM opsdb_rawdatapackage p", [], now=now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


def simulate(sql: str, params=(), *, bulk_load: bool = False) -> None:
    """Run worker steps as SQL; ``bulk_load``: without triggers and foreign-key checks (consistent by construction)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if bulk_load:
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    if bulk_load:  # the triggers that count each location's used bytes were skipped too
        from operations.usage import recount

        t0 = time.perf_counter()
        recount()
        print(f"  (bulk load: used bytes per location counted again in {time.perf_counter() - t0:.1f} s)", flush=True)


def measure_tick(label: str, use_tracemalloc: bool, only: str | None = None, made: list | None = None) -> float:
    """Run (and print) every pass of one tick, or just the pass named ``only``; returns seconds.

    ``made``: a list the passes' counts are appended to.
    """
    from django.db import connection
    from django.utils import timezone

    from opsdb.scheduler import passes

    now = timezone.now()
    total_t, total_q = 0.0, 0
    for name, run in passes():
        if only and name != only:
            continue
        calls = []

        def count(execute, sql, params, many, context, calls=calls):
            calls.append(1)
            return execute(sql, params, many, context)

        if use_tracemalloc:
            tracemalloc.start()
        from django.db import transaction

        t0 = time.perf_counter()
        with connection.execute_wrapper(count), transaction.atomic():
            result = run(now=now)
        seconds = time.perf_counter() - t0
        heap = ""
        if use_tracemalloc:
            heap = f"  heap peak {tracemalloc.get_traced_memory()[1] / 1e6:8.1f} MB"
            tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        total_t += seconds
        total_q += len(calls)
        if made is not None:
            made.append(result.count)
        print(f"  {label:<34} {name:<16} {seconds:8.2f} s  {len(calls):3d} queries  "
              f"{result.count:>9,} made  peak RSS {rss:7.1f} MB{heap}", flush=True)
    print(f"  {label:<34} {'TOTAL':<16} {total_t:8.2f} s  {total_q:3d} queries", flush=True)
    return total_t


def history_parts() -> None:
    """The operations history pass's parts, timed one by one (rolled back): its 5-minute work shows apart."""
    from django.db import transaction
    from django.utils import timezone

    from operations import history, usage
    from operations.selectors import find_oldest_unsafe_package

    now = timezone.now()
    parts = []
    with transaction.atomic():
        for name, run in (("location changes folded", usage.fold_changes),
                          ("oldest unsafe (5 min)", find_oldest_unsafe_package),
                          ("samples forgotten (5 min)", lambda: history._forget_old(now))):
            t0 = time.perf_counter()
            run()
            parts.append(f"{name} {time.perf_counter() - t0:.3f} s")
        transaction.set_rollback(True)
    print(f"  operations history, its parts: {'; '.join(parts)}", flush=True)


# --- the archived state, built with SQL --------------------------------------------------------

DAY_S = 86400
HISTORY_S = 5 * 365 * DAY_S  # five years of the telescope
DELETION_ITEMS_PER_JOB = 500  # the deletion pass's jobs hold 2.5 TB of 5 GB packages


def build_archived(n: int, locs, observation, keep_buffers: bool = False) -> float:
    """Five years done, made with SQL: what the scheduler and the workers leave once every package is archived.

    For each of N packages (registered over five years at ccat:buffer, 2 days ago for the newest): bundled
    (2,000 per bundle, its build COMPLETED), the direct hop ccat:buffer → cologne:buffer and the relay hop
    cologne:buffer → cornell:buffer TRANSFERRED, both unpacked, an archive transfer COMPLETED at each
    site, a PRESENT copy verified in both archives (verified within the fixity cycle: re-read in the last
    year by a COMPLETED GOOD fixity check when the copy is older than that), and every buffer copy —
    raw packages at the three buffers, bundle archives at the three — DELETED through COMPLETED delete
    jobs (DELETED items), the buffers WHEN_SAFE — or, with ``keep_buffers``, all still PRESENT at buffers
    that never delete (policy NEVER; a site that keeps its buffers). ccat's copies were never verified
    (registration does not read them back). A StateLog row per job finished (``complete``; the
    copies' own transitions are not written: no pass reads them), the history pass's cursor after them
    and its totals, used bytes per location counted. Foreign-key checks and triggers are off, and each
    large table's secondary indexes are built after its rows (as a bulk load does). Returns seconds.
    """
    from django.conf import settings
    from django.db import connection

    t0 = time.perf_counter()
    per_bundle = settings.BUNDLE_TARGET_SIZE_BYTES // PACKAGE_SIZE
    ids = {name: loc.pk for name, loc in locs.items()}
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # consistent by construction
        cursor.execute("SET maintenance_work_mem = '512MB'")
    tables = _large_tables()
    dropped = _drop_secondary_indexes(tables)
    _archived_packages(n, per_bundle, ids, observation)
    _archived_jobs(ids)
    buffers = "PRESENT" if keep_buffers else "DELETED"
    _archived_copies(ids, buffers)
    if not keep_buffers:
        _archived_deletions(ids)
    _archived_logs()
    t1 = time.perf_counter()
    _create_indexes(dropped)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = DEFAULT")
        if not keep_buffers:
            cursor.execute("UPDATE opsdb_datalocation SET deletion_policy = 'WHEN_SAFE' "
                           "WHERE location_type = 'BUFFER'")
    print(f"  {len(dropped)} secondary indexes built in {time.perf_counter() - t1:.1f} s", flush=True)
    from operations.usage import recount

    recount()
    t2 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"  VACUUM ANALYZE {time.perf_counter() - t2:.1f} s", flush=True)
    return time.perf_counter() - t0


def _large_tables() -> list[str]:
    from django_fsm_log.models import StateLog

    from custody.models import DeletionItem, DeletionJob
    from opsdb.models import RawDataPackage, RawDataPackageCopy
    from staging.models import FixityCheck, LongTermArchiveTransfer
    from transfers.models import (
        DataTransfer,
        DataTransferPackage,
        DataTransferPackageCopy,
        DataTransferPackageMember,
        DataTransferUnpack,
    )

    models = (RawDataPackage, RawDataPackageCopy, DataTransferPackage, DataTransferPackageMember,
              DataTransferPackageCopy, DataTransfer, DataTransferUnpack, LongTermArchiveTransfer, FixityCheck,
              DeletionJob, DeletionItem, StateLog)
    return [m._meta.db_table for m in models]


def _drop_secondary_indexes(tables: list[str]) -> list[str]:
    """Drop the indexes that back no constraint on ``tables``; returns their definitions."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid::regclass::text = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", [tables])
        rows = cursor.fetchall()
        for name, _ in rows:
            cursor.execute(f"DROP INDEX {name}")
    return [definition for _, definition in rows]


def _create_indexes(definitions: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for definition in definitions:
            cursor.execute(definition)


def _load(model, selected: dict[str, str], from_sql: str, params=()) -> int:
    from django.utils import timezone

    from opsdb.planning import insert_from_select

    t0 = time.perf_counter()
    made = insert_from_select(model, selected, from_sql, params, now=timezone.now())
    print(f"  {model._meta.label:<36} {made:>11,} rows  {time.perf_counter() - t0:6.1f} s", flush=True)
    return made


def _sql(label: str, statement: str, params=()) -> None:
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.rowcount
    print(f"  {label:<36} {rows:>11,} rows  {time.perf_counter() - t0:6.1f} s", flush=True)


# A bundle's life, after its newest member was registered: built in 2 h, the direct hop arrives at
# cologne 4 h later (unpacked and archived there by 9 h), the relay hop at cornell 4 h after that
# (unpacked and archived by 13 h); the buffers are emptied the next day.
BUNDLE_TIMES = {"built": "2 hours", "hop1": "6 hours", "unpack1": "8 hours", "archive1": "9 hours",
                "hop2": "10 hours", "unpack2": "12 hours", "archive2": "13 hours", "deleted": "1 day"}


def _archived_packages(n: int, per_bundle: int, ids: dict, observation) -> None:
    from django.conf import settings
    from django.utils import timezone

    from opsdb.models import RawDataPackage
    from transfers.models import DataTransferPackage, DataTransferPackageMember

    stamp = f"'{timezone.now().isoformat()}'::timestamptz"
    _load(RawDataPackage, {
        "name": "'raw-' || lpad(i::text, 9, '0') || '.tar'", "observation_id": str(observation.pk),
        "size": str(PACKAGE_SIZE), "checksum": "lpad(to_hex(i), 64, '0')", "bundled": "true",
        "created_at": f"{stamp} - interval '2 days' - make_interval(secs => ({n - 1} - i) * {HISTORY_S / n})",
    }, f"FROM generate_series(0, {n - 1}) i")
    # bundle k holds the packages k·per_bundle … (k+1)·per_bundle − 1 (in id order), made after the newest
    _load(DataTransferPackage, {
        "name": "'dtp-ccat-' || lpad(g.k::text, 9, '0') || '.tar'", "origin_location_id": str(ids["ccat:buffer"]),
        "archive_path": "'bundles/dtp-ccat-' || lpad(g.k::text, 9, '0') || '.tar'",
        "payload_size": "g.bytes", "size": "g.bytes", "checksum": "md5(g.k::text)",
        "target_size": str(settings.BUNDLE_TARGET_SIZE_BYTES), "status": "'COMPLETED'", "attempts_total": "1",
        "created_at": "g.t", "updated_at": f"g.t + interval '{BUNDLE_TIMES['built']}'",
        "claimed_at": "g.t + interval '10 minutes'", "finished_at": f"g.t + interval '{BUNDLE_TIMES['built']}'",
    }, f"FROM (SELECT (p.id - f.id) / {per_bundle} AS k, max(p.created_at) + interval '10 minutes' AS t, "
       f"sum(p.size) AS bytes FROM {RawDataPackage._meta.db_table} p, "
       f"(SELECT min(id) AS id FROM {RawDataPackage._meta.db_table}) f GROUP BY 1 ORDER BY 1) g")
    _load(DataTransferPackageMember, {
        "transfer_package_id": f"b.first + (p.id - f.id) / {per_bundle}", "raw_package_id": "p.id",
    }, f"FROM {RawDataPackage._meta.db_table} p, (SELECT min(id) AS id FROM {RawDataPackage._meta.db_table}) f, "
       f"(SELECT min(id) AS first FROM {DataTransferPackage._meta.db_table}) b")


def _job_done(created: str, finished: str, status: str = "COMPLETED") -> dict[str, str]:
    """A leased job's columns once a worker finished it on its first attempt."""
    return {"status": f"'{status}'", "attempts_total": "1", "created_at": created, "updated_at": finished,
            "claimed_at": f"{created} + interval '1 minute'", "finished_at": finished}


def _archived_jobs(ids: dict) -> None:
    from staging.models import LongTermArchiveTransfer
    from transfers.choices import RouteType
    from transfers.models import DataTransfer, DataTransferRoute, DataTransferUnpack

    routes = dict(DataTransferRoute.objects.values_list("route_type", "pk"))
    hops = [(1, "ccat:buffer", "cologne:buffer", "built", "hop1", "NULL", routes[RouteType.DIRECT]),
            (2, "cologne:buffer", "cornell:buffer", "unpack1", "hop2", "prev.id", routes[RouteType.RELAY])]
    for hop, origin, destination, start, end, previous, route in hops:
        _load(DataTransfer, {
            "transfer_package_id": "b.id", "route_id": str(route),
            "origin_location_id": str(ids[origin]), "destination_location_id": str(ids[destination]),
            "method": "'bbcp'", "hop": str(hop), "previous_id": previous, "destination_path": "b.archive_path",
            **_job_done(f"b.created_at + interval '{BUNDLE_TIMES[start]}'",
                        f"b.created_at + interval '{BUNDLE_TIMES[end]}'", "TRANSFERRED"),
        }, "FROM transfers_datatransferpackage b" + (
            "" if hop == 1 else " JOIN transfers_datatransfer prev ON prev.transfer_package_id = b.id AND prev.hop = 1"
        ))
    _load(DataTransferUnpack, {
        "transfer_id": "t.id", **_job_done("t.finished_at", "t.finished_at + interval '2 hours'", "UNPACKED"),
    }, "FROM transfers_datatransfer t")
    for site, start, end in (("cologne", "unpack1", "archive1"), ("cornell", "unpack2", "archive2")):
        _load(LongTermArchiveTransfer, {
            "raw_package_id": "m.raw_package_id", "source_location_id": str(ids[f"{site}:buffer"]),
            "destination_location_id": str(ids[f"{site}:archive"]),
            **_job_done(f"b.created_at + interval '{BUNDLE_TIMES[start]}'",
                        f"b.created_at + interval '{BUNDLE_TIMES[end]}'"),
        }, "FROM transfers_datatransferpackagemember m JOIN transfers_datatransferpackage b "
           "ON b.id = m.transfer_package_id ORDER BY m.raw_package_id")


def _archived_copies(ids: dict, buffers: str) -> None:
    """Raw copies at the three buffers (status ``buffers``) and the two archives (PRESENT, verified); bundle
    archives at the buffers (status ``buffers``)."""
    from django.conf import settings
    from django.utils import timezone

    from opsdb.models import RawDataPackageCopy
    from staging.models import FixityCheck
    from transfers.models import DataTransferPackageCopy

    stamp = f"'{timezone.now().isoformat()}'::timestamptz"
    member = ("FROM opsdb_rawdatapackage p JOIN transfers_datatransferpackagemember m ON m.raw_package_id = p.id "
              "JOIN transfers_datatransferpackage b ON b.id = m.transfer_package_id ORDER BY p.id")
    deleted = f"b.created_at + interval '{BUNDLE_TIMES['deleted']}'"
    # Re-read in the last (cycle − 5 days) when older than that: nothing is due for a fixity check.
    cycle_s = (settings.FIXITY_CYCLE_DAYS - 5) * DAY_S
    for loc, made, planned in (("ccat:buffer", "p.created_at", "false"), ("cologne:buffer", "unpack1", "true"),
                               ("cornell:buffer", "unpack2", "true"), ("cologne:archive", "archive1", "false"),
                               ("cornell:archive", "archive2", "false")):
        created = made if made == "p.created_at" else f"b.created_at + interval '{BUNDLE_TIMES[made]}'"
        archive = loc.endswith(":archive")
        verified = created if not archive else (
            f"CASE WHEN {created} > {stamp} - make_interval(secs => {cycle_s}) THEN {created} "
            f"ELSE {stamp} - make_interval(secs => {cycle_s}) "
            f"+ make_interval(secs => mod(extract(epoch FROM {stamp} - {created})::bigint, {cycle_s})) END")
        registered = loc == "ccat:buffer"  # registration records the copy without reading it back
        _load(RawDataPackageCopy, {
            "raw_package_id": "p.id", "location_id": str(ids[loc]), "status": f"'{'PRESENT' if archive else buffers}'",
            "path": "'raw/' || p.name", "checksum_verified": "''" if registered else "p.checksum",
            "verified_at": "NULL" if registered else verified, "archive_planned": planned, "created_at": created,
            "updated_at": deleted if buffers == "DELETED" and not archive else verified,
        }, member)
    _load(FixityCheck, {  # the last re-read of each archive copy that had one
        "copy_id": "c.id", "location_id": "c.location_id", "size": "p.size", "outcome": "'GOOD'",
        "checksum_found": "p.checksum", **_job_done("c.verified_at - interval '1 hour'", "c.verified_at"),
    }, "FROM opsdb_rawdatapackagecopy c JOIN opsdb_rawdatapackage p ON p.id = c.raw_package_id "
       "WHERE c.location_id IN (%s, %s) AND c.verified_at > c.created_at ORDER BY c.verified_at",
       [ids["cologne:archive"], ids["cornell:archive"]])
    for loc, made in (("ccat:buffer", "built"), ("cologne:buffer", "hop1"), ("cornell:buffer", "hop2")):
        _load(DataTransferPackageCopy, {
            "transfer_package_id": "b.id", "location_id": str(ids[loc]), "status": f"'{buffers}'",
            "path": "b.archive_path", "checksum_verified": "b.checksum",
            "verified_at": f"b.created_at + interval '{BUNDLE_TIMES[made]}'",
            "created_at": f"b.created_at + interval '{BUNDLE_TIMES[made]}'",
            "updated_at": deleted if buffers == "DELETED" else f"b.created_at + interval '{BUNDLE_TIMES[made]}'",
        }, "FROM transfers_datatransferpackage b")


def _archived_deletions(ids: dict) -> None:
    """The delete jobs that emptied the buffers: per buffer, jobs of 500 raw copies in package order;
    a bundle archive goes in the job of its first member."""
    from custody.models import DeletionItem, DeletionJob

    per = DELETION_ITEMS_PER_JOB
    for loc in ("ccat:buffer", "cologne:buffer", "cornell:buffer"):
        location = ids[loc]
        _load(DeletionJob, {
            "location_id": str(location), "reason": "'raw package copies scheduled for deletion'",
            "size": "g.bytes", **_job_done("g.t - interval '2 hours'", "g.t"),
        }, f"FROM (SELECT (c.raw_package_id - f.id) / {per} AS k, max(c.updated_at) AS t, sum(p.size) AS bytes "
           "FROM opsdb_rawdatapackagecopy c JOIN opsdb_rawdatapackage p ON p.id = c.raw_package_id, "
           "(SELECT min(id) AS id FROM opsdb_rawdatapackage) f WHERE c.location_id = %s GROUP BY 1 ORDER BY 1) g",
           [location])
        jobs = f"(SELECT min(id) AS first FROM custody_deletionjob WHERE location_id = {location}) j"
        _load(DeletionItem, {
            "job_id": f"j.first + (c.raw_package_id - f.id) / {per}", "raw_package_copy_id": "c.id",
            "path": "c.path", "size": str(PACKAGE_SIZE), "outcome": "'DELETED'",
        }, f"FROM opsdb_rawdatapackagecopy c, (SELECT min(id) AS id FROM opsdb_rawdatapackage) f, {jobs} "
           "WHERE c.location_id = %s ORDER BY c.raw_package_id", [location])
        _load(DeletionItem, {
            "job_id": f"j.first + (m.first_member - f.id) / {per}", "transfer_package_copy_id": "c.id",
            "path": "c.path", "size": "b.size", "outcome": "'DELETED'",
        }, "FROM transfers_datatransferpackagecopy c JOIN transfers_datatransferpackage b "
           "ON b.id = c.transfer_package_id JOIN (SELECT transfer_package_id, min(raw_package_id) AS first_member "
           "FROM transfers_datatransferpackagemember GROUP BY 1) m ON m.transfer_package_id = b.id, "
           f"(SELECT min(id) AS id FROM opsdb_rawdatapackage) f, {jobs} WHERE c.location_id = %s", [location])


def _archived_logs() -> None:
    """A ``complete`` StateLog row per finished job; the history pass has read them all (cursor, totals)."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django_fsm_log.models import StateLog

    from operations.history import CURSOR
    from opsdb.registry import job_kinds

    for model in job_kinds.models():
        table = model._meta.db_table
        content_type = ContentType.objects.get_for_model(model).pk
        _load(StateLog, {
            "timestamp": "j.finished_at", "source_state": "'ACTIVE'", "state": "j.status",
            "transition": "'complete'", "content_type_id": str(content_type), "object_id": f"j.{model._meta.pk.column}",
            "by_id": "NULL", "description": "''",
        }, f"FROM {table} j WHERE j.finished_at IS NOT NULL ORDER BY j.finished_at")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO operations_joboutcometotal (kind, outcome, count) "
                f"SELECT %s, 'completed', count(*) FROM {table} WHERE finished_at IS NOT NULL HAVING count(*) > 0",
                [model.KIND])
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO operations_historycursor (name, last_id) SELECT %s, coalesce(max(id), 0) "
                       "FROM django_fsm_log_statelog", [CURSOR])


def bench(n: int, url: str, use_tracemalloc: bool, passes_up_to: int, idle_ticks: int,
          drain_passes: int | None, archived: bool, keep_buffers: bool = False) -> None:
    from django.core.management import call_command
    from django.db import connection

    connection.close()
    recreate_database(url)
    call_command("migrate", verbosity=0)
    locs, observation = topology()
    if archived or keep_buffers or n > passes_up_to:
        seconds = build_archived(n, locs, observation, keep_buffers)
        print(f"\n== {n:,} raw packages ({n * PACKAGE_SIZE / 1e15:.1f} PB), every one archived and verified at "
              f"both sites{', buffers kept' if keep_buffers else ''}, built with SQL in {seconds:.1f} s ==",
              flush=True)
        idle_ticks_measured(n, idle_ticks, f"database built in {seconds:.0f} s")
        return
    seconds = register_packages(n, locs["ccat:buffer"], observation)
    print(f"\n== {n:,} raw packages ({n * PACKAGE_SIZE / 1e15:.1f} PB) registered in {seconds:.1f} s ==", flush=True)

    started = time.perf_counter()
    measure_tick("tick 1: fresh packages", use_tracemalloc)
    simulate(  # every bundle built: COMPLETED, with its archive at ccat:buffer
        "UPDATE transfers_datatransferpackage SET status = 'COMPLETED', size = payload_size, checksum = 'x';"
        "INSERT INTO transfers_datatransferpackagecopy (transfer_package_id, location_id, status, path, "
        "checksum_verified, created_at, updated_at) SELECT id, origin_location_id, 'PRESENT', archive_path, '', "
        "now(), now() FROM transfers_datatransferpackage"
    )
    measure_tick("tick 2: bundles built", use_tracemalloc)
    simulate(  # every first hop arrived at cologne
        "UPDATE transfers_datatransfer SET status = 'TRANSFERRED';"
        "INSERT INTO transfers_datatransferpackagecopy (transfer_package_id, location_id, status, path, "
        "checksum_verified, created_at, updated_at) SELECT transfer_package_id, destination_location_id, "
        "'PRESENT', 'bundles/x', '', now(), now() FROM transfers_datatransfer"
    )
    measure_tick("tick 3: first hops arrived", use_tracemalloc)
    simulate(  # every bundle unpacked at cologne: a raw copy per member
        "UPDATE transfers_datatransferunpack SET status = 'UNPACKED';"
        "INSERT INTO opsdb_rawdatapackagecopy (raw_package_id, location_id, status, path, checksum_verified, "
        "created_at, updated_at, archive_planned) SELECT m.raw_package_id, %s, 'PRESENT', 'raw/x', '', now(), now(), "
        "false "
        "FROM transfers_datatransferpackagemember m",
        [locs["cologne:buffer"].pk],
    )
    measure_tick("tick 4: unpacked at cologne", use_tracemalloc)
    with connection.cursor() as cursor:  # what autovacuum does between ticks in a steady state
        cursor.execute("VACUUM ANALYZE")
    idle = [measure_tick(f"tick 5.{i + 1}: nothing new", use_tracemalloc) for i in range(idle_ticks)]
    history_parts()
    steady = min(idle[1:]) if len(idle) > 1 else idle[0]
    print(f"planner_scale: idle pass {steady:.2f} s at {n} packages of history (first idle tick {idle[0]:.2f} s; "
          f"{time.perf_counter() - started:.0f} s for the ticks)", flush=True)
    deletion_stage(n, locs, use_tracemalloc, idle_ticks, steady, drain_passes)


def idle_ticks_measured(n: int, idle_ticks: int, note: str) -> None:
    """Idle ticks over N packages of history: the first may do the 5-minute work, then the steady ones."""
    import subprocess

    from django.conf import settings

    # The fixity budget a cycle over both archives needs (with the default 2 TB a day, checks of 5 GB packages
    # made in the last day would use it up, and the pass would stop before reading the due copies).
    need = 2 * n * PACKAGE_SIZE // (settings.FIXITY_CYCLE_DAYS - 5) + 1
    if settings.FIXITY_BYTES_PER_DAY < need:
        settings.FIXITY_BYTES_PER_DAY = need
    print(f"  fixity budget {settings.FIXITY_BYTES_PER_DAY / 1e12:.1f} TB a day per archive; "
          f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
    idle = [measure_tick(f"idle {i + 1}: nothing new", False) for i in range(idle_ticks)]
    history_parts()
    steady = min(idle[1:]) if len(idle) > 1 else idle[0]
    print(f"  load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"planner_scale: idle pass {steady:.2f} s at {n} packages of history (first idle tick {idle[0]:.2f} s; "
          f"{note})", flush=True)


def deletion_stage(n: int, locs, use_tracemalloc: bool, idle_ticks: int, steady_before: float,
                   drain_passes: int | None) -> None:
    """Ticks 6 and 7: the deletion pass over N archived packages, then idle ticks once the buffers are empty."""
    from django.db import connection

    cologne, cornell = locs["cologne:archive"].pk, locs["cornell:archive"].pk
    simulate(  # every hop arrived and was unpacked, every archive transfer done, verified copies in both archives
        "UPDATE transfers_datatransfer SET status = 'TRANSFERRED';"
        "UPDATE transfers_datatransferunpack SET status = 'UNPACKED';"
        "UPDATE staging_longtermarchivetransfer SET status = 'COMPLETED';"
        "INSERT INTO opsdb_rawdatapackagecopy (raw_package_id, location_id, status, path, checksum_verified, "
        "verified_at, created_at, updated_at, archive_planned, deletion_failures) "
        "SELECT p.id, a.loc, 'PRESENT', 'raw/' || p.name, p.checksum, now(), now(), now(), true, 0 "
        "FROM opsdb_rawdatapackage p, (VALUES (%s), (%s)) a(loc)",
        [cologne, cornell], bulk_load=True,
    )
    simulate("UPDATE opsdb_datalocation SET deletion_policy = 'WHEN_SAFE' WHERE location_type = 'BUFFER'")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    deletion_ticks(n, use_tracemalloc, idle_ticks, steady_before, drain_passes)


def deletion_ticks(n: int, use_tracemalloc: bool, idle_ticks: int, steady_before: float,
                   drain_passes: int | None) -> None:
    """Tick 6 and the passes that drain the backlog, then tick 7 (idle ticks on the emptied buffers)."""
    from django.conf import settings
    from django.db import connection

    seconds = measure_tick("tick 6: archived at both sites", use_tracemalloc)
    backlog = _buffer_copies("PRESENT")
    drain, passes = [seconds], 1
    while backlog and (drain_passes is None or passes < drain_passes):
        _workers_delete()
        made = []
        drain.append(measure_tick(f"tick 6.{passes + 1}: draining", use_tracemalloc, only="deletion", made=made))
        passes += 1
        if not made[0]:
            break  # nothing scheduled: what is left the rule keeps
        backlog = _buffer_copies("PRESENT")
    _workers_delete()
    left = _buffer_copies("PRESENT")
    note = ""
    if left and drain_passes is not None and passes >= drain_passes:
        # --drain-passes stopped the drain: the rest is deleted with SQL, as the next passes would.
        # (triggers off, like the other bulk loads: every one of these packages has two verified archive copies)
        simulate("UPDATE opsdb_rawdatapackagecopy SET status = 'DELETED' WHERE status = 'PRESENT' AND location_id IN "
                 "(SELECT id FROM opsdb_datalocation WHERE location_type = 'BUFFER');"
                 "UPDATE transfers_datatransferpackagecopy SET status = 'DELETED' WHERE status = 'PRESENT' "
                 "AND location_id IN (SELECT id FROM opsdb_datalocation WHERE location_type = 'BUFFER')",
                 bulk_load=True)
        note = f"; stopped after {passes} passes (--drain-passes), {left:,} copies then deleted with SQL"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(size), 0) FROM custody_deletionjob")
        jobs, size = cursor.fetchone()
    print(f"  deletion: {jobs:,} delete jobs freeing {int(size) / 1e15:.2f} PB; backlog drained in {passes} passes of "
          f"at most {settings.DELETION_MAX_COPIES_PER_PASS:,} copies per location, {sum(drain):.1f} s of passes "
          f"(first {drain[0]:.1f} s, slowest {max(drain):.1f} s){note}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    idle = [measure_tick(f"tick 7.{i + 1}: buffers emptied", use_tracemalloc) for i in range(idle_ticks)]
    steady = min(idle[1:]) if len(idle) > 1 else idle[0]
    print(f"planner_scale: deletion pass tick {seconds:.2f} s for {n} archived packages (drained in {passes} passes, "
          f"{sum(drain):.1f} s); idle tick after deletion {steady:.2f} s (before deletion {steady_before:.2f} s)",
          flush=True)


def _buffer_copies(status: str) -> int:
    """Raw package copies and bundle archives in the buffers with this status."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM opsdb_rawdatapackagecopy c JOIN opsdb_datalocation l ON l.id = c.location_id "
            "WHERE l.location_type = 'BUFFER' AND c.status = %s) + (SELECT count(*) FROM "
            "transfers_datatransferpackagecopy c JOIN opsdb_datalocation l ON l.id = c.location_id "
            "WHERE l.location_type = 'BUFFER' AND c.status = %s)", [status, status])
        return cursor.fetchone()[0]


def _workers_delete() -> None:
    """The workers deleted every scheduled copy (the guard checks each raw copy as it goes)."""
    from django.db import connection

    simulate(
        "UPDATE opsdb_rawdatapackagecopy SET status = 'DELETED' WHERE status = 'DELETION_SCHEDULED';"
        "UPDATE transfers_datatransferpackagecopy SET status = 'DELETED' WHERE status = 'DELETION_SCHEDULED';"
        "UPDATE custody_deletionitem SET outcome = 'DELETED' WHERE outcome = 'WAITING';"
        "UPDATE custody_deletionjob SET status = 'COMPLETED', finished_at = now() WHERE status = 'PENDING'"
    )
    with connection.cursor() as cursor:  # what autovacuum does between ticks
        cursor.execute("VACUUM ANALYZE")


def idle_only(url: str, idle_ticks: int) -> None:
    """Idle ticks on the history a previous run left (after this code's migrations): no hour-long rebuild at 10^7."""
    from django.core.management import call_command
    from django.db import connection

    from opsdb.models import RawDataPackage

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    n = RawDataPackage.objects.count()
    idle_ticks_measured(n, idle_ticks, f"database of {url} kept from an earlier run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated package counts")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure the Python heap per pass")
    parser.add_argument("--passes-up-to", type=int, default=10**6,
                        help="above this many packages, the archived state is built with SQL (as --archived)")
    parser.add_argument("--idle-ticks", type=int, default=3, help="how many idle ticks to measure (tick 5)")
    parser.add_argument("--drain-passes", type=int, default=None,
                        help="run at most this many deletion passes in tick 6 (default: until the buffers are drained)")
    parser.add_argument("--archived", action="store_true",
                        help="build every package archived and verified with SQL and measure only idle ticks")
    parser.add_argument("--keep-buffers", action="store_true",
                        help="as --archived, but the buffers keep their copies (policy NEVER): nothing deleted")
    parser.add_argument("--idle-only", action="store_true",
                        help="keep the database a previous run left (one size), migrate it, measure only idle ticks")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    setup_django(url)
    print(f"planner benchmark on {url} ({os.cpu_count()} CPUs)")
    if args.idle_only:
        idle_only(url, max(1, args.idle_ticks))
        return
    for n in (int(x) for x in args.sizes.split(",")):
        bench(n, url, args.tracemalloc, args.passes_up_to, max(1, args.idle_ticks), args.drain_passes,
              args.archived, args.keep_buffers)


if __name__ == "__main__":
    main()
