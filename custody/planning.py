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
from datetime import UTC, datetime

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
    """Schedule the copies at ``location`` that its policy and the rule allow; returns how many.

    The rule runs once per kind of copy; what it allows is read (id, size, when archived) and
    scheduled by id in one statement.
    """
    raw_rows = _rows(deletable_raw_copies_sql([location.pk], required))
    bundle_rows = _rows(deletable_bundle_copies_sql([location.pk], required))
    sites = ", ".join(sorted(required_site_names(location, required))) or "none"
    if location.deletion_policy == DeletionPolicy.WHEN_SAFE:
        why = f"WHEN_SAFE at {location}"
    else:
        why, raw_rows, bundle_rows = _under_pressure(location, raw_rows, bundle_rows, result)
    raw = _schedule(RawDataPackageCopy, raw_rows, why, now,
                    f"archived and verified at every required site ({sites}); no open job reads it")
    bundles = _schedule(DataTransferPackageCopy, bundle_rows, why, now,
                        "every hop from here done, every member archived at its required sites")
    _say_scheduled(result, location, raw, bundles, sites)
    return raw[0] + bundles[0]


def required_site_names(location: DataLocation, required: dict[int, set[int]]) -> set[str]:
    names = dict(DataLocation.objects.filter(site_id__in=required.get(location.site_id, ()))
                 .values_list("site_id", "site__name").distinct())
    return set(names.values())


def _rows(sql: str) -> list[tuple[int, int, datetime | None]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [(int(pk), int(size or 0), archived_at) for pk, size, archived_at in cursor.fetchall()]


def ids_queryset(model, ids: list[int]):
    """``model``'s rows with these ids, however many: one array parameter (PostgreSQL) or a literal list."""
    if connection.vendor == "postgresql":
        return model.objects.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [ids]))
    literal = ", ".join(str(int(pk)) for pk in ids) or "NULL"
    return model.objects.filter(pk__in=RawSQL(f"SELECT id FROM {model._meta.db_table} WHERE id IN ({literal})", []))


def _schedule(model, rows, why: str, now: datetime, because: str) -> tuple[int, int]:
    """(copies, bytes) moved PRESENT → DELETION_SCHEDULED among ``rows`` (id, size, archived_at)."""
    if not rows:
        return 0, 0
    sizes = {pk: size for pk, size, _ in rows}
    moved = copies_transition(ids_queryset(model, list(sizes)), "schedule_deletion",
                              description=f"{why}: {because}"[:500], now=now)
    return moved, sum(sizes.values()) if moved == len(sizes) else _moved_size(model, sizes, now)


def _moved_size(model, sizes: dict[int, int], now: datetime) -> int:
    """The bytes of the copies this pass did schedule (another process moved some meanwhile)."""
    moved = ids_queryset(model, list(sizes)).filter(status="DELETION_SCHEDULED", updated_at=now)
    return sum(sizes[pk] for pk in moved.values_list("pk", flat=True))


def used_bytes(location: DataLocation) -> int:
    """Bytes the PRESENT copies at ``location`` use (three sums)."""
    total = 0
    with connection.cursor() as cursor:
        for kind in KINDS:
            cursor.execute(
                f"SELECT COALESCE(SUM({kind.size_sql}), 0) FROM {kind.model._meta.db_table} c {kind.size_join} "
                f"WHERE c.location_id = %s AND c.status = 'PRESENT'", [location.pk])
            total += int(cursor.fetchone()[0])
    return total


def _under_pressure(location: DataLocation, raw_rows, bundle_rows, result: PassResult):
    """(why, the raw rows, the bundle rows) to schedule: oldest-archived first, just to the low watermark."""
    if not location.capacity_bytes:
        result.say(f"{location} is UNDER_PRESSURE but has no capacity_bytes: nothing can be measured, "
                   "nothing is deleted")
        return "", [], []
    used = used_bytes(location)
    high = location.capacity_bytes * location.high_watermark_percent // 100
    low = location.capacity_bytes * location.low_watermark_percent // 100
    if used <= high:
        return "", [], []
    needed = used - low
    oldest_first = sorted([("b", *row) for row in bundle_rows] + [("r", *row) for row in raw_rows],
                          key=lambda row: (row[3] is None, row[3] or now_min(), row[0], row[1]))
    taken, freed = [], 0
    for row in oldest_first:
        if freed >= needed:
            break  # the copy taken last crossed the low watermark: no more
        taken.append(row)
        freed += row[2]
    why = (f"UNDER_PRESSURE at {location}: {human_bytes(used)} used of {human_bytes(location.capacity_bytes)} "
           f"(high watermark {location.high_watermark_percent} %), freeing {human_bytes(needed)} to reach "
           f"{location.low_watermark_percent} %, oldest-archived first")
    if not taken:
        result.say(f"{location} is above its high watermark ({human_bytes(used)} of "
                   f"{human_bytes(location.capacity_bytes)}) but nothing here may be deleted yet")
    return (why, [row[1:] for row in taken if row[0] == "r"], [row[1:] for row in taken if row[0] == "b"])


def now_min():
    return datetime.min.replace(tzinfo=UTC)


def _say_scheduled(result: PassResult, location: DataLocation, raw: tuple[int, int], bundles: tuple[int, int],
                   sites: str) -> None:
    parts = []
    if raw[0]:
        parts.append(f"{KINDS[0].count(raw[0])} ({human_bytes(raw[1])}): archived and verified at "
                     f"every required site ({sites}), no open job reads them")
    if bundles[0]:
        parts.append(f"{KINDS[1].count(bundles[0])} ({human_bytes(bundles[1])}): every hop from here "
                     "done and every member archived")
    if parts:
        policy = DeletionPolicy(location.deletion_policy).name
        result.say(f"{location} ({policy}) scheduled for deletion, freeing {human_bytes(raw[1] + bundles[1])}: "
                   + "; ".join(parts))


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
    return (
        f"FROM {table} c {kind.size_join} WHERE c.status = 'DELETION_SCHEDULED' AND c.location_id IN ({locs}) "
        f"AND NOT EXISTS (SELECT 1 FROM {items} i JOIN {jobs} j ON j.id = i.job_id "
        f"WHERE i.{kind.name}_id = c.id AND i.outcome = 'WAITING' AND j.status IN ('PENDING', 'ACTIVE', 'FAILED'))"
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
        cursor.execute(
            f"WITH j(chunk, job_id) AS (VALUES {chunks}) "
            f"INSERT {'' if postgres else 'OR IGNORE '}INTO {items} "
            f"(job_id, {kind.name}_id, path, size, outcome, error) "
            f"SELECT j.job_id, s.id, s.path, s.size, %s, '' FROM "
            f"(SELECT c.id, c.path, {kind.size_sql} AS size, ROW_NUMBER() OVER (ORDER BY c.id) - 1 AS rn "
            f"{_uncovered(kind, [location_id])} AND c.deletion_failures = %s) s "
            f"JOIN j ON j.chunk = s.rn / %s{' ON CONFLICT DO NOTHING' if postgres else ''}",
            [DeletionOutcome.WAITING, failures, limit])


def _set_sizes(job_ids: list[int]) -> None:
    """Each new job's size: the sum of its items' (one UPDATE)."""
    jobs, items = DeletionJob._meta.db_table, DeletionItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {jobs} SET size = (SELECT COALESCE(SUM(i.size), 0) FROM {items} i "
                       f"WHERE i.job_id = {jobs}.id) WHERE id IN ({', '.join(str(int(pk)) for pk in job_ids)})")
