"""Where is my data: every copy of a raw package, how safe it is, and the work pending on it.

One read for the admin page, the API (``GET /api/v1/raw-packages/<id>/custody/``) and
``manage.py custody NAME``, in a fixed number of queries however many copies and jobs there are:
the copies (one), the staged files (one), the routes and locations that say which archives the
package must reach (``settings.CUSTODY_ARCHIVE_SITES``, two), and one per declared job kind.

A *safe* archive copy is a PRESENT copy at a long-term archive whose verified checksum is the
package's own: the only kind of copy that counts (DESIGN.md). A package is *safe* once every
archive its routes deliver it to holds a safe copy, and at least ``ARCHIVE_MIN_COPIES`` sites do;
its *time to safety* runs from its registration to the moment the last of those copies was made.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import RawDataFileCopy, RawDataPackage, RawDataPackageCopy, Site
from opsdb.registry import job_kinds
from opsdb.work import JobKindHandler

PENDING_STATUSES = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)

# (handler, its jobs touching the package) → the jobs this reader may see; None: every job.
JobFilter = Callable[[JobKindHandler, QuerySet], QuerySet | None]


@dataclass(frozen=True)
class CopyInfo:
    """One physical copy of the package."""

    id: int
    site: str
    location: str
    location_type: str
    status: str
    path: str
    checksum_verified: str
    verified_at: datetime | None
    created_at: datetime
    safe: bool


@dataclass(frozen=True)
class StagedInfo:
    """The package's files staged (file access records) at one processing location."""

    site: str
    location: str
    present_files: int
    total_files: int


@dataclass(frozen=True)
class WorkInfo:
    """A job not finished yet that reads or writes the package."""

    kind: str
    id: int
    status: str
    site: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    created_at: datetime


@dataclass
class Custody:
    package: RawDataPackage
    copies: list[CopyInfo]
    staged: list[StagedInfo]
    pending_work: list[WorkInfo]
    required_archive_sites: list[str]
    min_archive_copies: int
    safe_since: datetime | None = None
    waiting_for: list[str] = field(default_factory=list)

    @property
    def safe_archive_copies(self) -> int:
        return sum(1 for c in self.copies if c.safe)

    @property
    def safe_sites(self) -> list[str]:
        return sorted({c.site for c in self.copies if c.safe})

    @property
    def is_safe(self) -> bool:
        return self.safe_since is not None

    @property
    def time_to_safety(self) -> timedelta | None:
        """Registration → all required archive copies verified; None while not safe."""
        return None if self.safe_since is None else max(self.safe_since - self.package.created_at, timedelta(0))

    def unsafe_for(self, now: datetime | None = None) -> timedelta | None:
        """How long since registration the package has been waiting to be safe; None once safe."""
        return None if self.is_safe else (now or timezone.now()) - self.package.created_at


@cache
def _archive_sites_function() -> Callable[[Mapping[int, Iterable[int]]], dict[int, set[int]]]:
    return import_string(settings.CUSTODY_ARCHIVE_SITES)


def required_archive_sites(locations_by_package: Mapping[int, Iterable[int]]) -> dict[int, set[int]]:
    """Per package (given the locations of its copies), the ids of the sites whose archive it must reach."""
    return _archive_sites_function()(locations_by_package)


def is_safe_copy(copy: RawDataPackageCopy, package: RawDataPackage) -> bool:
    """A PRESENT copy in a long-term archive, verified with the package's checksum."""
    return (
        copy.status == CopyStatus.PRESENT
        and copy.location.location_type == LocationType.LONG_TERM_ARCHIVE
        and bool(copy.checksum_verified)
        and copy.checksum_verified.lower() == package.checksum.lower()
    )


def raw_package_custody(package: RawDataPackage, *, visible: JobFilter | None = None) -> Custody:
    """Everything about where ``package`` is; ``visible`` narrows the pending work a reader may see."""
    copies = list(
        RawDataPackageCopy.objects.filter(raw_package=package).select_related("location__site")
        .order_by("location__site__name", "location__name")
    )
    infos = [_copy_info(c, package) for c in copies]
    required_ids = required_archive_sites({package.pk: [c.location_id for c in copies]}).get(package.pk, set())
    required = dict(Site.objects.filter(pk__in=required_ids).values_list("pk", "name")) if required_ids else {}
    custody = Custody(
        package=package, copies=infos, staged=_staged(package), pending_work=_pending_work(package, visible),
        required_archive_sites=sorted(required.values()), min_archive_copies=settings.ARCHIVE_MIN_COPIES,
    )
    custody.safe_since, custody.waiting_for = _safety(custody)
    return custody


def _copy_info(copy: RawDataPackageCopy, package: RawDataPackage) -> CopyInfo:
    location = copy.location
    return CopyInfo(
        id=copy.pk, site=location.site.name, location=str(location), location_type=location.location_type,
        status=copy.status, path=copy.path, checksum_verified=copy.checksum_verified,
        verified_at=copy.verified_at, created_at=copy.created_at, safe=is_safe_copy(copy, package),
    )


def _staged(package: RawDataPackage) -> list[StagedInfo]:
    """Staged files per processing location, counted in one grouped query (none: not staged anywhere)."""
    rows = (
        RawDataFileCopy.objects.filter(raw_file__package=package)
        .values("location_id", "location__name", "location__site__name")
        .annotate(present=Count("pk", filter=Q(status=CopyStatus.PRESENT)))
        .order_by("location__site__name", "location__name")
    )
    total = package.files.count() if rows else 0
    return [StagedInfo(site=r["location__site__name"], location=f"{r['location__site__name']}:{r['location__name']}",
                       present_files=r["present"], total_files=total) for r in rows]


def _pending_work(package: RawDataPackage, visible: JobFilter | None) -> list[WorkInfo]:
    """One query per declared job kind: its pending, active or failed jobs on the package."""
    work = []
    for handler in job_kinds:
        jobs = handler.touching_raw_packages(handler.model.objects.filter(status__in=PENDING_STATUSES), [package.pk])
        if visible is not None:
            jobs = visible(handler, jobs)
            if jobs is None:
                continue
        work.extend(
            WorkInfo(kind=handler.kind, id=job.pk, status=job.status, site=handler.site_of(job).name,
                     attempts=job.attempts, next_attempt_at=job.next_attempt_at, last_error=job.last_error,
                     created_at=job.created_at)
            for job in jobs.order_by("created_at", "pk")
        )
    return work


def _safety(custody: Custody) -> tuple[datetime | None, list[str]]:
    """When the package became safe (None: not yet), and what it still waits for."""
    first_safe: dict[str, datetime] = {}
    for c in custody.copies:
        if c.safe:
            first_safe[c.site] = min(first_safe.get(c.site, c.created_at), c.created_at)
    waiting = [f"a verified copy in the archive at {site}" for site in custody.required_archive_sites
               if site not in first_safe]
    short = custody.min_archive_copies - len(first_safe)
    if short > 0:
        waiting.append(f"{short} more verified archive cop{'y' if short == 1 else 'ies'} at another site "
                       f"(at least {custody.min_archive_copies} sites)")
    if waiting:
        return None, waiting
    needed = [first_safe[site] for site in custody.required_archive_sites]
    earliest = sorted(first_safe.values())[: custody.min_archive_copies]
    return max(needed + earliest), []



def human_duration(delta: timedelta) -> str:
    """'3 d 4 h', '2 h 5 min', '40 s': the two largest units."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def safety_summary(custody: Custody, now: datetime | None = None) -> str:
    """One sentence: safe since when and after how long, or what it still waits for."""
    copies = f"{custody.safe_archive_copies} safe archive cop{'y' if custody.safe_archive_copies == 1 else 'ies'}"
    if custody.is_safe:
        return (f"Safe: {copies} ({', '.join(custody.safe_sites)}); safe since {custody.safe_since:%Y-%m-%d %H:%M:%S} "
                f"UTC, {human_duration(custody.time_to_safety)} after registration.")
    return (f"Not safe yet ({copies}), registered {human_duration(custody.unsafe_for(now))} ago; waiting for "
            f"{'; '.join(custody.waiting_for)}.")


def custody_lines(custody: Custody, now: datetime | None = None) -> list[str]:
    """The custody of a package as plain text lines (``manage.py custody``)."""
    package = custody.package
    lines = [
        f"{package.name}  (id {package.pk}, {package.size} bytes, {package.checksum_algorithm} {package.checksum})",
        f"registered {package.created_at:%Y-%m-%d %H:%M:%S} UTC",
        safety_summary(custody, now),
        "required archives: " + (", ".join(custody.required_archive_sites) or "none (no route delivers it to one)")
        + f"; at least {custody.min_archive_copies} site(s)",
        "",
        f"copies ({len(custody.copies)}):",
    ]
    for c in custody.copies:
        verified = (f"{c.checksum_verified or '-'} at {c.verified_at:%Y-%m-%d %H:%M:%S}" if c.verified_at
                    else "not verified")
        lines.append(f"  {c.location:<28} {c.location_type:<17} {c.status:<20} {'SAFE ' if c.safe else ''}"
                     f"{c.path}  verified: {verified}")
    for s in custody.staged:
        lines.append(f"  {s.location:<28} staged files: {s.present_files} of {s.total_files} present")
    lines += ["", f"pending work ({len(custody.pending_work)}):"]
    for w in custody.pending_work:
        due = f", next attempt {w.next_attempt_at:%Y-%m-%d %H:%M:%S}" if w.next_attempt_at else ""
        error = f", last error: {w.last_error[:120]}" if w.last_error else ""
        lines.append(f"  {w.kind} #{w.id} at {w.site}: {w.status}, {w.attempts} failed attempt(s){due}{error}")
    if not custody.pending_work:
        lines.append("  none")
    return lines
