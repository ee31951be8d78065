"""The deletion pass: schedule what the rule and each location's policy allow, and hand it to workers.

Per tick, with a fixed number of queries per location that deletes (never one per copy):

1. **Pause on failures**: a location where at least ``DELETION_PAUSE_AFTER_FAILURES`` deletions
   failed since the last pass pauses its deletion, with the reason; an operator resumes it.
2. **Schedule** (PRESENT → DELETION_SCHEDULED) at every active location whose policy is not
   NEVER, whose deletion switch is on and that is not paused: WHEN_SAFE every copy the rule
   allows (``custody.rule``); UNDER_PRESSURE, when the PRESENT copies there use more than the
   high watermark of ``capacity_bytes``, the copies the rule allows, oldest-archived first, just
   until the low watermark is reached (the last one taken crosses it; no more).
3. **Jobs**: DELETION_SCHEDULED copies that no open delete job covers (new ones, failed ones given
   another attempt, expired staging's file access records) go into ``delete`` jobs of at most
   ``DELETE_JOB_MAX_COPIES`` copies, one location and one kind of copy each. A copy that failed
   before waits the job backoff of its failures.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.expressions import RawSQL

from custody.models import DeletionItem, DeletionJob, DeletionOutcome
from custody.rule import deletable_bundle_copies_sql, deletable_raw_copies_sql, required_archive_sites
from opsdb.choices import DeletionPolicy, JobStatus
from opsdb.copies import copies_transition
from opsdb.leases import backoff_delay
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from opsdb.planning import PassResult, human_bytes, plural
from transfers.models import DataTransferPackageCopy

OPEN = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)


@dataclass(frozen=True)
class CopyKind:
    """One kind of physical copy as the deletion pass handles it."""

    name: str  # the DeletionItem field, and the protocol's item kind
    model: type
    size_sql: str  # SQL of the copy's size, over the copy table aliased ``c``
    size_join: str
    noun: str
    nouns: str

    def count(self, n: int) -> str:
        return f"{n} {self.noun if n == 1 else self.nouns}"


KINDS = (
    CopyKind("raw_package_copy", RawDataPackageCopy, "p.size",
             "JOIN opsdb_rawdatapackage p ON p.id = c.raw_package_id", "raw package copy", "raw package copies"),
    CopyKind("transfer_package_copy", DataTransferPackageCopy, "COALESCE(b.size, b.payload_size)",
             "JOIN transfers_datatransferpackage b ON b.id = c.transfer_package_id", "bundle archive",
             "bundle archives"),
    CopyKind("file_copy", RawDataFileCopy, "f.size",
             "JOIN opsdb_rawdatafile f ON f.id = c.raw_file_id", "file access record", "file access records"),
)


def plan_deletions(*, now: datetime) -> PassResult:
    """The scheduler's deletion pass (see the module docstring)."""
    result = PassResult("deletion")
    locations = list(DataLocation.objects.select_related("site").filter(active=True))
    release_cancelled(now, result)
    pause_failing(locations, now, result)
    deleting = [loc for loc in locations if loc.deletes]
    if deleting:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # The rule's queries are estimated dear (their per-row subqueries): compiling them
                # took a second per location, on buffers with nothing left to delete.
                cursor.execute("SET LOCAL jit = off")
        required = required_archive_sites()
        for location in deleting:
            result.count += schedule_at(location, required, now, result)
    create_jobs(now, result)
    return result


# --- 0. cancelled jobs -----------------------------------------------------------------------------

def release_cancelled(now: datetime, result: PassResult) -> None:
    """Copies of delete jobs an operator cancelled are kept (PRESENT again); the policy may schedule them anew."""
    waiting = DeletionItem.objects.filter(job__status=JobStatus.CANCELLED, outcome=DeletionOutcome.WAITING)
    if not waiting.exists():
        return
    kept = 0
    for kind in KINDS:
        copies = kind.model.objects.filter(pk__in=waiting.filter(**{f"{kind.name}__isnull": False})
                                           .values(f"{kind.name}_id"))
        kept += copies_transition(copies, "keep", description="its delete job was cancelled", now=now)
    if waiting.update(outcome=DeletionOutcome.KEPT):
        result.say(f"{plural(kept, 'copy')} of cancelled delete jobs kept")


# --- 1. failures ---------------------------------------------------------------------------------

def pause_failing(locations: list[DataLocation], now: datetime, result: PassResult) -> None:
    """Pause deletion where too many deletions failed since the last pass; forget the counts."""
    threshold = settings.DELETION_PAUSE_AFTER_FAILURES
    for location in locations:
        failures = location.deletion_failures_recent
        if not failures:
            continue
        if failures >= threshold and not location.deletion_paused_reason:
            reason = (f"{plural(failures, 'deletion')} failed here since the last pass "
                      f"(limit {threshold}); last error: {location.deletion_last_error or 'none reported'}")[:500]
            DataLocation.objects.filter(pk=location.pk).update(deletion_paused_reason=reason, deletion_paused_at=now)
            location.deletion_paused_reason = reason
            result.say(f"deletion at {location} PAUSED: {reason}. An operator resumes it.")
        DataLocation.objects.filter(pk=location.pk).update(
            deletion_failures_recent=F("deletion_failures_recent") - failures)


# --- 2. scheduling ---------------------------------------------------------------------------------

def schedule_at(location: DataLocation, required: dict[int, set[int]], now: datetime, result: PassResult) -> int:
    """Schedule what ``location``'s policy and the rule allow, at most the per-pass cap; returns how many.

    One query picks them (``_pick``: the rule over both kinds of copy, oldest-archived first, at
    most ``DELETION_MAX_COPIES_PER_PASS``; under pressure only up to the low watermark), then
    one transition per kind schedules them by id. A location with more to delete than the cap
    gets the rest in the following passes, oldest-archived first still.
    """
    cap = settings.DELETION_MAX_COPIES_PER_PASS
    sites = ", ".join(sorted(required_site_names(location, required))) or "none"
    if location.deletion_policy == DeletionPolicy.WHEN_SAFE:
        why, needed = f"WHEN_SAFE at {location}", None
    else:
        why, needed = _under_pressure(location, result)
        if needed is None:
            return 0
    rows = _pick(location, required, needed, cap)
    raw_rows = [row[1:] for row in rows if row[0] == "r"]
    raw = _schedule(RawDataPackageCopy, raw_rows, why, now,
                    f"archived and verified at every required site ({sites}); no open job reads it")
    bundles = _schedule(DataTransferPackageCopy, [row[1:] for row in rows if row[0] == "b"], why, now,
                        "every hop from here done, every member archived at its required sites")
    if needed is None:
        capped = len(raw_rows) >= cap
    else:
        capped = len(rows) >= cap and sum(row[2] for row in rows) < needed
    if location.deletion_policy == DeletionPolicy.UNDER_PRESSURE and capped != location.deletion_draining:
        # Stopped at the cap before the low watermark: the next passes go on down to it, even
        # once the location is back under its high watermark.
        DataLocation.objects.filter(pk=location.pk).update(deletion_draining=capped)
    if needed is not None and not rows:
        result.say(f"{location} is above its {'low' if location.deletion_draining else 'high'} watermark "
                   f"but nothing here may be deleted yet")
    _say_scheduled(result, location, raw, bundles, sites, cap if capped else None)
    return raw[0] + bundles[0]


def required_site_names(location: DataLocation, required: dict[int, set[int]]) -> set[str]:
    names = dict(DataLocation.objects.filter(site_id__in=required.get(location.site_id, ()))
                 .values_list("site_id", "site__name").distinct())
    return set(names.values())


def _pick(location: DataLocation, required: dict[int, set[int]], needed: int | None,
          cap: int) -> list[tuple[str, int, int]]:
    """(kind "r"/"b", id, size) of the copies to schedule here: what the rule allows, at most ``cap``.

    One query, both rules (``custody.rule``) as subqueries. WHEN_SAFE (``needed`` None): any
    ``cap`` raw copies the rule allows, and the bundle archives among the first whose members add
    up to ``cap`` packages; safety is checked per candidate and the query stops there, so a pass
    costs about ``cap`` lookups however large the backlog. UNDER_PRESSURE: every candidate, set-based,
    oldest-archived first (bundle archives: when the copy was made), then kind and id, while the bytes
    taken before a copy fall short of ``needed`` (the copy taken last crosses the low watermark).
    """
    if needed is None:
        # WHEN_SAFE: no order to keep, so the rule checks safety per candidate and stops at the cap.
        bundles = deletable_bundle_copies_sql([location.pk], required, limit=cap)
        raw = deletable_raw_copies_sql([location.pk], required, limit=cap)
        sql = f"SELECT 'b', x.id, x.size FROM ({bundles}) x UNION ALL SELECT 'r', y.id, y.size FROM ({raw}) y"
        params = []
    else:
        both = (f"SELECT 'b' AS kind, x.id, x.size, x.archived_at FROM "
                f"({deletable_bundle_copies_sql([location.pk], required)}) x "
                f"UNION ALL SELECT 'r' AS kind, y.id, y.size, y.archived_at FROM "
                f"({deletable_raw_copies_sql([location.pk], required)}) y")
        order = "u.archived_at IS NULL, u.archived_at, u.kind, u.id"
        sql = (f"SELECT z.kind, z.id, z.size FROM (SELECT u.kind, u.id, u.size, "
               f"SUM(u.size) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) - u.size AS before, "
               f"ROW_NUMBER() OVER (ORDER BY {order}) AS rn FROM ({both}) u) z "
               f"WHERE z.rn <= %s AND z.before < %s ORDER BY z.rn")
        params = [cap, needed]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(kind, int(pk), int(size or 0)) for kind, pk, size in cursor.fetchall()]


def ids_queryset(model, ids: list[int]):
    """``model``'s rows with these ids, however many: one array parameter (PostgreSQL) or a literal list."""
    if connection.vendor == "postgresql":
        return model.objects.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [ids]))
    literal = ", ".join(str(int(pk)) for pk in ids) or "NULL"
    return model.objects.filter(pk__in=RawSQL(f"SELECT id FROM {model._meta.db_table} WHERE id IN ({literal})", []))


def _schedule(model, rows, why: str, now: datetime, because: str) -> tuple[int, int]:
    """(copies, bytes) moved PRESENT → DELETION_SCHEDULED among ``rows`` (id, size)."""
    if not rows:
        return 0, 0
    sizes = dict(rows)
    moved = copies_transition(ids_queryset(model, list(sizes)), "schedule_deletion",
                              description=f"{why}: {because}"[:500], now=now)
    return moved, sum(sizes.values()) if moved == len(sizes) else _moved_size(model, sizes, now)


def _moved_size(model, sizes: dict[int, int], now: datetime) -> int:
    """The bytes of the copies this pass did schedule (another process moved some meanwhile)."""
    moved = ids_queryset(model, list(sizes)).filter(status="DELETION_SCHEDULED", updated_at=now)
    return sum(sizes[pk] for pk in moved.values_list("pk", flat=True))


def used_bytes(location: DataLocation) -> int:
    """Bytes the PRESENT copies at ``location`` use (one query, a sum per kind of copy)."""
    sums = " + ".join(
        f"(SELECT COALESCE(SUM({kind.size_sql}), 0) FROM {kind.model._meta.db_table} c {kind.size_join} "
        f"WHERE c.location_id = %s AND c.status = 'PRESENT')" for kind in KINDS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sums}", [location.pk] * len(KINDS))
        return int(cursor.fetchone()[0])


def _under_pressure(location: DataLocation, result: PassResult) -> tuple[str, int | None]:
    """(why, bytes to free) at an UNDER_PRESSURE location; None: nothing to free now.

    Deletion starts above the high watermark and goes on down to the low one: in this pass, or,
    when a pass stopped at the per-pass cap (``deletion_draining``), in the next ones.
    """
    if not location.capacity_bytes:
        result.say(f"{location} is UNDER_PRESSURE but has no capacity_bytes: nothing can be measured, "
                   "nothing is deleted")
        return "", None
    used = used_bytes(location)
    high = location.capacity_bytes * location.high_watermark_percent // 100
    low = location.capacity_bytes * location.low_watermark_percent // 100
    if used <= low or (used <= high and not location.deletion_draining):
        if location.deletion_draining:
            DataLocation.objects.filter(pk=location.pk).update(deletion_draining=False)
            location.deletion_draining = False
        return "", None
    needed = used - low
    above = (f"high watermark {location.high_watermark_percent} %" if used > high else
             "still above the low watermark after a pass that stopped at the per-pass cap")
    why = (f"UNDER_PRESSURE at {location}: {human_bytes(used)} used of {human_bytes(location.capacity_bytes)} "
           f"({above}), freeing {human_bytes(needed)} to reach "
           f"{location.low_watermark_percent} %, oldest-archived first")
    return why, needed


def _say_scheduled(result: PassResult, location: DataLocation, raw: tuple[int, int], bundles: tuple[int, int],
                   sites: str, cap: int | None) -> None:
    parts = []
    if raw[0]:
        parts.append(f"{KINDS[0].count(raw[0])} ({human_bytes(raw[1])}): archived and verified at "
                     f"every required site ({sites}), no open job reads them")
    if bundles[0]:
        parts.append(f"{KINDS[1].count(bundles[0])} ({human_bytes(bundles[1])}): every hop from here "
                     "done and every member archived")
    if parts:
        policy = DeletionPolicy(location.deletion_policy).name
        more = f"; more next pass (at most {cap:,} copies a pass)" if cap else ""
        result.say(f"{location} ({policy}) scheduled for deletion, freeing {human_bytes(raw[1] + bundles[1])}: "
                   + "; ".join(parts) + more)


# --- 3. jobs ---------------------------------------------------------------------------------------

def create_jobs(now: datetime, result: PassResult) -> int:
    """Delete jobs for the DELETION_SCHEDULED copies no open job covers, at locations that delete now."""
    names = {loc.pk: str(loc) for loc in DataLocation.objects.select_related("site").filter(
        active=True, deletion_enabled=True, deletion_paused_reason="")}
    if not names:
        return 0
    return sum(_jobs_for(kind, names, now, result) for kind in KINDS)


def _uncovered(kind: CopyKind, location_ids: list[int]) -> str:
    """SQL over the copy table ``c``: scheduled copies at these locations that no open job covers."""
    table = kind.model._meta.db_table
    items = DeletionItem._meta.db_table
    jobs = DeletionJob._meta.db_table
    locs = ", ".join(str(int(x)) for x in location_ids)
    # A count per copy (its index lookup on the waiting items), not NOT EXISTS: just after a pass
    # scheduled thousands, the statistics still say none are scheduled, and PostgreSQL made the
    # anti join a rescan of every waiting item for every copy.
    return (
        f"FROM {table} c {kind.size_join} WHERE c.status = 'DELETION_SCHEDULED' AND c.location_id IN ({locs}) "
        f"AND (SELECT COUNT(*) FROM {items} i JOIN {jobs} j ON j.id = i.job_id "
        f"WHERE i.{kind.name}_id = c.id AND i.outcome = 'WAITING' AND j.status IN ('PENDING', 'ACTIVE', 'FAILED')) = 0"
    )


def _jobs_for(kind: CopyKind, names: dict[int, str], now: datetime, result: PassResult) -> int:
    groups = _groups(kind, list(names))
    if not groups:
        return 0
    limit = settings.DELETE_JOB_MAX_COPIES
    planned = []  # (location, failures, its jobs)
    for location_id, failures, count, _ in groups:
        due = now + backoff_delay(failures) if failures else None
        jobs = [DeletionJob(location_id=location_id, next_attempt_at=due, created_at=now,
                            reason=f"{kind.nouns} scheduled for deletion") for _ in range((count + limit - 1) // limit)]
        planned.append((location_id, failures, jobs))
    DeletionJob.objects.bulk_create([job for _, _, jobs in planned for job in jobs])
    for location_id, failures, jobs in planned:
        _fill(kind, jobs, location_id, failures, limit)
    new_ids = [job.pk for _, _, jobs in planned for job in jobs]
    _set_sizes(new_ids)
    for location_id, count, size in _totals(groups):
        ids = [job.pk for loc, _, jobs in planned if loc == location_id for job in jobs]
        result.say(f"{plural(len(ids), 'delete job')} ({kind.count(count)}, {human_bytes(size)}) at "
                   f"{names.get(location_id)}: #{ids[0]}{'…#' + str(ids[-1]) if len(ids) > 1 else ''}")
    return len(new_ids)


def _groups(kind: CopyKind, location_ids: list[int]) -> list[tuple[int, int, int, int]]:
    """(location, failures so far, copies, bytes) of the uncovered scheduled copies (one grouped query)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT c.location_id, c.deletion_failures, COUNT(*), COALESCE(SUM({kind.size_sql}), 0) "
                       f"{_uncovered(kind, location_ids)} GROUP BY c.location_id, c.deletion_failures "
                       f"ORDER BY c.location_id, c.deletion_failures")
        return [tuple(int(v) for v in row) for row in cursor.fetchall()]


def _totals(groups):
    totals: dict[int, list[int]] = {}
    for location_id, _, count, size in groups:
        entry = totals.setdefault(location_id, [0, 0])
        entry[0] += count
        entry[1] += size
    return [(loc, count, size) for loc, (count, size) in totals.items()]


def _fill(kind: CopyKind, jobs: list[DeletionJob], location_id: int, failures: int, limit: int) -> None:
    """The group's uncovered copies, in id order, ``limit`` to a job (one INSERT … SELECT)."""
    items = DeletionItem._meta.db_table
    chunks = ", ".join(f"({n}, {int(job.pk)})" for n, job in enumerate(jobs))
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        # A copy already waiting in another job (the unique constraint) is skipped, never given twice.
        # The copies are numbered once (MATERIALIZED): with the statistics of before the pass, which
        # knew of no scheduled copy, PostgreSQL computed them again for every job.
        cursor.execute(
            f"WITH j(chunk, job_id) AS (VALUES {chunks}), "
            f"s AS MATERIALIZED (SELECT c.id, c.path, {kind.size_sql} AS size, "
            f"ROW_NUMBER() OVER (ORDER BY c.id) - 1 AS rn "
            f"{_uncovered(kind, [location_id])} AND c.deletion_failures = %s) "
            f"INSERT {'' if postgres else 'OR IGNORE '}INTO {items} "
            f"(job_id, {kind.name}_id, path, size, outcome, error) "
            f"SELECT j.job_id, s.id, s.path, s.size, %s, '' FROM s "
            f"JOIN j ON j.chunk = s.rn / %s{' ON CONFLICT DO NOTHING' if postgres else ''}",
            [failures, DeletionOutcome.WAITING, limit])


def _set_sizes(job_ids: list[int]) -> None:
    """Each new job's size: the sum of its items' (one UPDATE)."""
    jobs, items = DeletionJob._meta.db_table, DeletionItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {jobs} SET size = (SELECT COALESCE(SUM(i.size), 0) FROM {items} i "
                       f"WHERE i.job_id = {jobs}.id) WHERE id IN ({', '.join(str(int(pk)) for pk in job_ids)})")
