"""Fixity audits: re-reading long-term archive copies, taking bad ones out of service, repairing them.

- **Checks** (job kind ``verify``): every PRESENT copy at an active long-term archive is re-read at
  least once per ``FIXITY_CYCLE_DAYS``: a copy is due when it was last verified that long ago (or
  never). Due copies are checked oldest-verified first, at most ``FIXITY_BYTES_PER_DAY`` bytes of
  first checks per location in any 24 hours (rechecks are not counted: they are few and urgent).
- **Results** (``fixity_check_record``, inside the worker's ``complete``): the checksum read back
  equal to the package's refreshes ``verified_at`` (and brings a MISMATCH/MISSING copy back to
  PRESENT); another checksum marks the copy MISMATCH, a missing file MISSING — never counted as a
  safe copy from then on.
- **Second look**: a copy found bad by a first check gets one recheck; a good recheck restores it.
- **Repair**: a copy a recheck confirmed bad gets an archive transfer (``repair_of`` the copy)
  from another verified PRESENT copy of the package: one at the same site first (a buffer, a
  processing area, another archive), else one in the archive of a site with an active route to
  this site, with that route's method (``settings.SITE_ROUTE_METHODS``). Completing it records
  the copy PRESENT and verified again (``opsdb.work.record_copies``). A copy with no verified copy
  to repair from stays MISMATCH/MISSING, under Needs attention.
- **Hold**: when more than ``FIXITY_HOLD_RATIO`` (1 %) of the first checks finished at a location
  in the last 24 hours failed, and at least ``FIXITY_HOLD_MIN_FAILURES`` of them, automatic repair
  stops there (a ``FixityHold``) until an operator releases it: a mass failure is more likely a
  mount problem than rot, and copying over every copy would hide it.

The pass works on sets: a fixed number of queries per archive location however many copies.
"""

from collections import defaultdict
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from opsdb.choices import CopyStatus, JobStatus, LocationType, TransferMethod
from opsdb.copies import copy_transition, transition_of
from opsdb.models import RawDataPackageCopy
from opsdb.planning import Locations, PassResult, human_bytes, plural
from staging.choices import FixityOutcome
from staging.models import FixityCheck, FixityHold, LongTermArchiveTransfer

BAD_OUTCOMES = (FixityOutcome.MISMATCH, FixityOutcome.MISSING)
BAD_STATUSES = (CopyStatus.MISMATCH, CopyStatus.MISSING)
OPEN = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)
DAY = timedelta(days=1)


# --- recording a result ---------------------------------------------------------------------------


def fixity_check_record(*, job: FixityCheck, checksum: str = "", missing: bool = False) -> None:
    """Record what a worker read back for ``job``'s copy (inside ``job_complete``, the job row locked).

    ``missing``: the file is not there. Otherwise ``checksum`` is what it read, compared here with
    the package's own. ValidationError (``checksum``) when neither is given.
    """
    copy = job.copy
    package = copy.raw_package
    if not missing and not checksum:
        raise ValidationError({"checksum": ["Give the checksum read back, or missing: true."]})
    now = timezone.now()
    if missing:
        job.outcome = FixityOutcome.MISSING
    elif checksum.lower() == package.checksum.lower():
        job.outcome = FixityOutcome.GOOD
    else:
        job.outcome = FixityOutcome.MISMATCH
    job.checksum_found = checksum.lower()
    if job.outcome == FixityOutcome.GOOD:
        _record_good(job, copy, now)
    else:
        _record_bad(job, copy)


def _record_good(job: FixityCheck, copy: RawDataPackageCopy, now: datetime) -> None:
    if copy.status in BAD_STATUSES:
        copy_transition(copy=copy, transition="restore", description=f"fixity check #{job.pk}: checksum good again",
                        verified_at=now, checksum_verified=job.checksum_found)
    else:  # PRESENT (or on its way out: the check only refreshes when it was verified)
        RawDataPackageCopy.objects.filter(pk=copy.pk, status=CopyStatus.PRESENT).update(
            verified_at=now, checksum_verified=job.checksum_found, updated_at=now)


def _record_bad(job: FixityCheck, copy: RawDataPackageCopy) -> None:
    transition = "mark_mismatch" if job.outcome == FixityOutcome.MISMATCH else "mark_missing"
    sources, target = transition_of(RawDataPackageCopy, transition)
    found = f"read {job.checksum_found}" if job.outcome == FixityOutcome.MISMATCH else "no file"
    if copy.status in sources:
        copy_transition(copy=copy, transition=transition,
                        description=f"fixity check #{job.pk}{' (recheck)' if job.recheck else ''}: {found}")


# --- the scheduler's pass -------------------------------------------------------------------------


def plan_fixity(*, now: datetime) -> PassResult:
    """Holds, rechecks, repairs and the day's checks, in that order (a hold stops repairs at once)."""
    result = PassResult("fixity")
    topology = Locations.load()
    archives = [loc for loc in topology.locations.values()
                if loc.active and loc.location_type == LocationType.LONG_TERM_ARCHIVE]
    if not archives:
        return result
    _hold_mass_failures(result, archives, now)
    _plan_rechecks(result, now)
    _plan_repairs(result, topology, now)
    for archive in archives:
        _plan_checks(result, archive, now)
    return result


def _hold_mass_failures(result: PassResult, archives, now: datetime) -> None:
    """A hold at every archive where too many of the last 24 hours' first checks failed."""
    held, released = set(), {}
    for location_id, released_at in FixityHold.objects.filter(
            Q(released_at__isnull=True) | Q(released_at__gt=now - DAY)).values_list("location_id", "released_at"):
        if released_at is None:
            held.add(location_id)
        else:  # an operator looked: only checks finished since count towards a new hold
            released[location_id] = max(released_at, released.get(location_id, released_at))
    window = Q()
    for location_id, released_at in released.items():
        window &= ~Q(location_id=location_id, finished_at__lte=released_at)
    counts = (
        FixityCheck.objects.filter(location_id__in=[a.id for a in archives], status=JobStatus.COMPLETED,
                                   recheck=False, finished_at__gt=now - DAY)
        .filter(window)
        .values("location_id")
        .annotate(checks=Count("pk"), failures=Count("pk", filter=Q(outcome__in=BAD_OUTCOMES)))
    )
    labels = {a.id: a.label for a in archives}
    holds = []
    for row in counts:
        checks, failures, location_id = row["checks"], row["failures"], row["location_id"]
        if location_id in held or failures < settings.FIXITY_HOLD_MIN_FAILURES:
            continue
        if failures > settings.FIXITY_HOLD_RATIO * checks:
            reason = (f"{failures} of {checks} fixity checks in 24 hours failed at {labels[location_id]} "
                      f"(over {settings.FIXITY_HOLD_RATIO:.0%}): automatic repair stopped; check the storage "
                      "(a mount?) and release the hold")
            holds.append(FixityHold(location_id=location_id, reason=reason, checks=checks, failures=failures,
                                    created_at=now))
            result.say(reason)
    FixityHold.objects.bulk_create(holds, ignore_conflicts=True)


def _latest_check(**filters):
    """Checks of the copy (OuterRef) made after the outer check: there is a newer word on it."""
    return FixityCheck.objects.filter(copy_id=OuterRef("copy_id"), pk__gt=OuterRef("pk"), **filters)


def _plan_rechecks(result: PassResult, now: datetime) -> None:
    """One recheck for each copy a first check found bad, and still out of service."""
    first_bad = (
        FixityCheck.objects.filter(status=JobStatus.COMPLETED, recheck=False, outcome__in=BAD_OUTCOMES,
                                   copy__status__in=BAD_STATUSES)
        .filter(~Exists(_latest_check()))
        .values_list("copy_id", "location_id", "size")
    )
    rechecks = [FixityCheck(copy_id=c, location_id=loc, size=size, recheck=True, created_at=now)
                for c, loc, size in first_bad]
    FixityCheck.objects.bulk_create(rechecks, ignore_conflicts=True)
    if rechecks:
        result.count += len(rechecks)
        result.say(f"{len(rechecks)} cop{'y' if len(rechecks) == 1 else 'ies'} found bad: checked once more")


def _confirmed_bad(now: datetime):
    """Copies a recheck found bad, at archives not held, with no repair made since that recheck."""
    held = FixityHold.objects.filter(released_at__isnull=True).values("location_id")
    repaired_since = LongTermArchiveTransfer.objects.filter(repair_of_id=OuterRef("copy_id"),
                                                            created_at__gte=OuterRef("finished_at"))
    return (
        FixityCheck.objects.filter(status=JobStatus.COMPLETED, recheck=True, outcome__in=BAD_OUTCOMES,
                                   copy__status__in=BAD_STATUSES)
        .exclude(location_id__in=held)
        .filter(~Exists(_latest_check()), ~Exists(repaired_since))
        .values_list("copy_id", "copy__raw_package_id", "location_id")
    )


def _plan_repairs(result: PassResult, topology: Locations, now: datetime) -> None:
    """An archive transfer from another verified copy for every copy confirmed bad (not at a held archive)."""
    bad = list(_confirmed_bad(now))
    if not bad:
        return
    sources = defaultdict(list)
    good = RawDataPackageCopy.objects.verified().filter(raw_package_id__in={p for _, p, _ in bad})
    for package_id, location_id in good.values_list("raw_package_id", "location_id"):
        sources[package_id].append(location_id)
    methods = site_route_methods()
    repairs, stuck = [], []
    for copy_id, package_id, location_id in bad:
        chosen = _repair_source(topology, sources[package_id], location_id, methods)
        if chosen is None:
            stuck.append(copy_id)
            continue
        source_id, method = chosen
        repairs.append(LongTermArchiveTransfer(
            raw_package_id=package_id, source_location_id=source_id, destination_location_id=location_id,
            repair_of_id=copy_id, method=method, created_at=now, updated_at=now,
        ))
    LongTermArchiveTransfer.objects.bulk_create(repairs, ignore_conflicts=True)
    if repairs:
        result.count += len(repairs)
        pairs = [f"{topology.label(r.source_location_id)} → {topology.label(r.destination_location_id)}"
                 for r in repairs[:10]]
        result.say(f"{plural(len(repairs), 'repair')}: {', '.join(pairs)}{'…' if len(repairs) > 10 else ''}")
    if stuck:
        result.say(f"{len(stuck)} bad cop{'y' if len(stuck) == 1 else 'ies'} with no verified copy to repair from "
                   f"(copy ids {', '.join(map(str, stuck[:10]))}{'…' if len(stuck) > 10 else ''}): needs an operator")


def _repair_source(topology: Locations, candidates: list[int], destination_id: int,
                   methods: dict[tuple[int, int], str]) -> tuple[int, str] | None:
    """A verified copy's location to repair from: the same site first, else an archive with a route here."""
    locations = topology.locations
    destination = locations[destination_id]
    usable = [locations[c] for c in candidates if c != destination_id and c in locations and locations[c].active]
    same_site = [loc for loc in usable if loc.site_id == destination.site_id]
    if same_site:
        best = min(same_site, key=lambda loc: (loc.location_type != LocationType.LONG_TERM_ARCHIVE, loc.id))
        return best.id, TransferMethod.COPY
    routed = [loc for loc in usable if loc.location_type == LocationType.LONG_TERM_ARCHIVE
              and (loc.site_id, destination.site_id) in methods]
    if not routed:
        return None
    best = min(routed, key=lambda loc: loc.id)
    return best.id, methods[(best.site_id, destination.site_id)]


@cache
def _route_methods_function():
    return import_string(settings.SITE_ROUTE_METHODS)


def site_route_methods() -> dict[tuple[int, int], str]:
    """(origin site id, destination site id) → the method of the active route between them."""
    return _route_methods_function()()


def _nothing_due(archive, cycle_began: datetime) -> bool:
    """No copy at ``archive`` is due: the first PRESENT copy in the index's order was verified since the cycle began.

    One row read from the head of ``rawpackagecopy_fixity_due`` (location, verified_at NULLS FIRST, id),
    an exact estimate whatever the history. The ranges below are estimated from per-column statistics,
    which cannot see that the never-verified or long-verified copies are at the buffers, not at this
    archive (at 10^6 packages PostgreSQL expected half a million rows and started parallel workers
    for two empty ranges on every pass).
    """
    first = (RawDataPackageCopy.objects.filter(location_id=archive.id, status=CopyStatus.PRESENT)
             .order_by(F("verified_at").asc(nulls_first=True), "pk").values_list("verified_at", flat=True)[:1])
    return all(verified_at is not None and verified_at > cycle_began for verified_at in first)


def _due_copies(archive, now: datetime, limit: int) -> list[tuple[int, int, int]]:
    """Up to ``limit`` due copies at ``archive``, never verified first, then oldest-verified: (id, size, running sum).

    Nothing is read past one row when nothing is due (``_nothing_due``). Otherwise two range scans of
    the index ``rawpackagecopy_fixity_due``, the never verified and those verified before the cycle
    began: one scan with ``verified_at IS NULL OR …`` cannot be bounded by the index, and read every
    copy at the archive (1.3–2.2 s per archive at 10^6 copies) however few were due.
    """
    cycle_began = now - timedelta(days=settings.FIXITY_CYCLE_DAYS)
    if _nothing_due(archive, cycle_began):
        return []
    open_check = FixityCheck.objects.filter(copy_id=OuterRef("pk"), status__in=OPEN)
    # The index's own order, also for the never-verified (ordered by id alone, PostgreSQL walked the
    # primary key through every copy, guessing half of them were never verified).
    copies = (RawDataPackageCopy.objects.filter(location_id=archive.id, status=CopyStatus.PRESENT)
              .filter(~Exists(open_check)).order_by(F("verified_at").asc(nulls_first=True), "pk")
              .values_list("pk", "raw_package__size"))
    rows = list(copies.filter(verified_at__isnull=True)[:limit])
    if len(rows) < limit:
        rows += list(copies.filter(verified_at__lte=cycle_began)[: limit - len(rows)])
    running = 0
    due = []
    for pk, size in rows:
        running += size
        due.append((pk, size, running))
    return due


def _plan_checks(result: PassResult, archive, now: datetime) -> None:
    """The due copies of one archive, oldest-verified first, within the day's byte budget."""
    since = now - DAY
    spent = (FixityCheck.objects.filter(location_id=archive.id, recheck=False, created_at__gt=since)
             .aggregate(total=Sum("size"))["total"] or 0)
    budget = settings.FIXITY_BYTES_PER_DAY - spent
    if budget <= 0:
        return
    rows = _due_copies(archive, now, settings.FIXITY_MAX_CHECKS_PER_PASS + 1)
    chosen = [(pk, size) for pk, size, running in rows[: settings.FIXITY_MAX_CHECKS_PER_PASS] if running <= budget]
    if not chosen and rows and spent == 0:
        chosen = [rows[0][:2]]  # a copy larger than a whole day's budget is still checked, alone
    if not chosen:
        return
    FixityCheck.objects.bulk_create(
        [FixityCheck(copy_id=pk, location_id=archive.id, size=size, created_at=now) for pk, size in chosen],
        ignore_conflicts=True,
    )
    result.count += len(chosen)
    left = len(rows) - len(chosen)
    result.say(f"{plural(len(chosen), 'fixity check')} at {archive.label} "
               f"({human_bytes(sum(size for _, size in chosen))})"
               + (f"; {left}{'+' if len(rows) > settings.FIXITY_MAX_CHECKS_PER_PASS else ''} more due wait for "
                  "the next day's budget" if left else ""))
