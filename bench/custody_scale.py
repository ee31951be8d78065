"""Custody at observatory scale (not a test): "where is my data" and the fixity pass at 10^6 packages.

    .venv/bin/python bench/custody_scale.py                  # 1,000 (baseline) then 1,000,000 packages
    .venv/bin/python bench/custody_scale.py --sizes 1000 100000
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/opsdb_custody_bench (default) — dropped and
    re-created for every size.

For each size N: N raw packages (5 GB each) registered at ccat:buffer, each archived at cologne and
cornell (verified copies; cologne's last verified 0–729 days ago, so about half are due for a fixity
check), on the demo topology. Then, timed with their query counts:
  custody read      — ``opsdb.custody.raw_package_custody`` of a package in the middle (median of 20);
  custody search    — the admin's exact-name lookup and its prefix list (first 21 names, UPPER index);
  fixity pass       — ``staging.fixity.plan_fixity``: the day's checks (2 TB per archive = 400 packages);
  fixity pass again — the same day: the budget is spent, nothing more is made.
The last lines compare each figure at N with the baseline size (the first of --sizes) in the same run.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner_scale import recreate_database, register_packages, setup_django, topology  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/opsdb_custody_bench"


def timed(run, repeat: int = 1) -> tuple[float, int, object]:
    """(median seconds, queries of one run, result)."""
    from django.db import connection

    times, result, calls = [], None, []
    for i in range(repeat):
        calls = []

        def count(execute, sql, params, many, context, calls=calls):
            calls.append(1)
            return execute(sql, params, many, context)

        t0 = time.perf_counter()
        with connection.execute_wrapper(count):
            result = run()
        times.append(time.perf_counter() - t0)
        del i
    return statistics.median(times), len(calls), result


def archive_everything(locs) -> None:
    from django.db import connection
    from django.utils import timezone

    from opsdb.models import RawDataPackageCopy
    from opsdb.planning import insert_from_select

    now = timezone.now()
    for label, age in (("cologne:archive", "(p.id %% 730) * interval '1 day'"), ("cornell:archive", "interval '0'")):
        insert_from_select(RawDataPackageCopy, {
            "raw_package_id": "p.id", "location_id": str(locs[label].pk), "path": "'raw/' || p.name",
            "checksum_verified": "p.checksum", "verified_at": f"now() - {age}",
        }, "FROM opsdb_rawdatapackage p", [], now=now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def bench(n: int, url: str) -> dict[str, tuple[float, int]]:
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from opsdb.custody import raw_package_custody
    from opsdb.models import RawDataPackage
    from staging.fixity import plan_fixity

    connection.close()
    recreate_database(url)
    call_command("migrate", verbosity=0)
    locs, observation = topology()
    t0 = time.perf_counter()
    register_packages(n, locs["ccat:buffer"], observation)
    archive_everything(locs)
    print(f"\n== {n:,} raw packages, {3 * n:,} copies, built in {time.perf_counter() - t0:.1f} s ==", flush=True)

    name = f"raw-{n // 2:08d}.tar"
    package = RawDataPackage.objects.get(name=name)
    figures = {}
    figures["custody read"] = timed(lambda: raw_package_custody(package), repeat=20)[:2]
    figures["custody exact name"] = timed(
        lambda: RawDataPackage.objects.filter(name=name).values_list("pk", flat=True).first(), repeat=20)[:2]
    prefix = name[:9]  # "raw-00050": 1,000 names at 10^6
    figures["custody prefix list"] = timed(
        lambda: list(RawDataPackage.objects.filter(name__istartswith=prefix).order_by("name")
                     .values("pk", "name", "created_at")[:21]), repeat=20)[:2]
    now = timezone.now()
    for label in ("fixity pass", "fixity pass again"):
        with transaction.atomic():
            seconds, queries, result = timed(lambda: plan_fixity(now=now))
        figures[label] = (seconds, queries)
        print(f"  {label:<22} made {result.count:,}", flush=True)
    for label, (seconds, queries) in figures.items():
        print(f"  {label:<22} {seconds * 1000:10.1f} ms  {queries:3d} queries", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    setup_django(url)
    results = {n: bench(n, url) for n in args.sizes}
    base = args.sizes[0]
    for n in args.sizes[1:]:
        print(f"\n== {n:,} against {base:,} ==")
        for label, (seconds, queries) in results[n].items():
            base_seconds, base_queries = results[base][label]
            print(f"  {label:<22} ×{seconds / max(base_seconds, 1e-6):7.1f} time, queries {base_queries} → {queries}")


if __name__ == "__main__":
    main()
