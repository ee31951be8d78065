"""Reads for the staging pages, the API and the staging services: plans, visibility, progress."""

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import BigIntegerField, Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from opsdb.choices import CopyStatus, LocationType
from opsdb.models import DataLocation, RawDataFile, RawDataFileCopy, RawDataPackage, RawDataPackageCopy
from opsdb.roles import is_operator
from staging.choices import StagedPackageState
from staging.models import StagingJob, StagingJobPackage

DONE_ITEM_STATES = (StagedPackageState.STAGED, StagedPackageState.REUSED)


def staging_jobs_visible_to(user: AbstractBaseUser) -> QuerySet[StagingJob]:
    """Operators see every request, everyone else only their own."""
    jobs = StagingJob.objects.all()
    return jobs if is_operator(user) else jobs.filter(owner=user)


def with_progress(jobs: QuerySet[StagingJob]) -> QuerySet[StagingJob]:
    """Annotate package and byte counts (total and done) in the same query as the jobs.

    Each is a subquery per job on the items' job index, evaluated for the rows a page shows (a
    LIMIT above them): grouping every job's items and packages before the LIMIT grows with the
    table, and a count of the list needs none of them.
    """
    return jobs.select_related("owner", "destination_location__site").annotate(
        packages_total=_item_sum(Count("pk")),
        packages_done=_item_sum(Count("pk"), done=True),
        size_total=_item_sum(Sum("raw_package__size")),
        size_done=_item_sum(Sum("raw_package__size"), done=True),
    )


def _item_sum(aggregate, *, done: bool = False) -> Coalesce:
    """``aggregate`` over one job's items (0 when it has none)."""
    items = StagingJobPackage.objects.filter(job=OuterRef("pk"))
    if done:
        items = items.filter(state__in=DONE_ITEM_STATES)
    value = Subquery(items.order_by().values("job").annotate(value=aggregate).values("value"))
    return Coalesce(value, Value(0), output_field=BigIntegerField())


def archive_copies_prefetch(to_attr: str = "archive_copies") -> Prefetch:
    """Present copies of packages in long-term archives, with their location and site."""
    copies = (
        RawDataPackageCopy.objects.present()
        .filter(location__location_type=LocationType.LONG_TERM_ARCHIVE)
        .select_related("location__site")
        .order_by("location__site__name", "location__name")
    )
    return Prefetch("copies", queryset=copies, to_attr=to_attr)


@dataclass
class PlannedPackage:
    """One package of a staging request: where it comes from, or that it is already there."""

    package: RawDataPackage
    source: DataLocation | None
    reused: bool

    @property
    def archived(self) -> bool:
        return self.source is not None


@dataclass
class SourceSummary:
    location: DataLocation
    count: int = 0
    size: int = 0


@dataclass
class StagingPlan:
    """What a staging request would do: per package its source archive or reuse."""

    destination: DataLocation | None
    items: list[PlannedPackage] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def total_size(self) -> int:
        return sum(item.package.size for item in self.items)

    @property
    def reused(self) -> list[PlannedPackage]:
        return [item for item in self.items if item.reused]

    @property
    def to_stage(self) -> list[PlannedPackage]:
        return [item for item in self.items if not item.reused]

    @property
    def not_archived(self) -> list[PlannedPackage]:
        return [item for item in self.to_stage if not item.archived]

    @property
    def stage_size(self) -> int:
        return sum(item.package.size for item in self.to_stage)

    @property
    def sources(self) -> list[SourceSummary]:
        summaries: dict[int, SourceSummary] = {}
        for item in self.to_stage:
            if item.source is not None:
                summary = summaries.setdefault(item.source.pk, SourceSummary(location=item.source))
                summary.count += 1
                summary.size += item.package.size
        return sorted(summaries.values(), key=lambda s: str(s.location))


def reused_package_ids(package_ids: list[int], location: DataLocation, now: datetime | None = None) -> set[int]:
    """Packages whose every file (at least one) is staged and alive at ``location``."""
    now = now or timezone.now()
    alive = Q(files__copies__location=location, files__copies__status=CopyStatus.PRESENT) & (
        Q(files__copies__expires_at__isnull=True) | Q(files__copies__expires_at__gt=now)
    )
    rows = (
        RawDataPackage.objects.filter(pk__in=package_ids)
        .annotate(n_files=Count("files", distinct=True), n_alive=Count("files", filter=alive, distinct=True))
        .values_list("pk", "n_files", "n_alive")
    )
    return {pk for pk, n_files, n_alive in rows if n_files > 0 and n_files == n_alive}


def choose_sources(package_ids: list[int], destination: DataLocation | None) -> dict[int, DataLocation]:
    """Each package's source archive: same site as the destination first, then location priority."""
    copies = (
        RawDataPackageCopy.objects.present()
        .filter(raw_package_id__in=package_ids, location__location_type=LocationType.LONG_TERM_ARCHIVE,
                location__active=True)
        .select_related("location__site")
    )
    site_id = destination.site_id if destination else None

    def rank(copy: RawDataPackageCopy) -> tuple:
        return (copy.location.site_id != site_id, -copy.location.priority, copy.location.pk)

    chosen: dict[int, DataLocation] = {}
    for copy in sorted(copies, key=rank):
        chosen.setdefault(copy.raw_package_id, copy.location)
    return chosen


def staging_plan(*, raw_packages: list[RawDataPackage], destination: DataLocation | None) -> StagingPlan:
    """Plan a request without changing anything: reuse what is staged and alive, else pick an archive."""
    packages = list({p.pk: p for p in raw_packages}.values())
    ids = [p.pk for p in packages]
    reused = reused_package_ids(ids, destination) if destination and ids else set()
    sources = choose_sources(ids, destination) if ids else {}
    items = [PlannedPackage(package=p, source=sources.get(p.pk), reused=p.pk in reused) for p in packages]
    return StagingPlan(destination=destination, items=items)


def job_items(job: StagingJob) -> list[StagingJobPackage]:
    return list(
        job.items.select_related("raw_package__observation__instrument", "source_location__site")
        .order_by("raw_package__name")
    )


def staged_file_paths(job: StagingJob) -> dict[int, list[str]]:
    """Absolute paths of the staged (or reused) files of ``job``, by raw package id."""
    location = job.destination_location
    package_ids = list(job.items.filter(state__in=DONE_ITEM_STATES).values_list("raw_package_id", flat=True))
    copies = (
        RawDataFileCopy.objects.filter(
            location=location, status=CopyStatus.PRESENT, raw_file__package_id__in=package_ids
        )
        .select_related("raw_file")
        .order_by("raw_file__package_id", "path")
    )
    paths: dict[int, list[str]] = {}
    for copy in copies:
        paths.setdefault(copy.raw_file.package_id, []).append(absolute_path(location, copy.path))
    return paths


def absolute_path(location: DataLocation, path: str) -> str:
    return f"{location.base_path.rstrip('/')}/{path.lstrip('/')}"


def staged_dir(package_name: str) -> str:
    """Where a package's files are unpacked at a processing location (relative to its base path)."""
    return f"staged/{package_name.removesuffix('.tar')}"


ITEMS_TO_STAGE = "items_to_stage"


def items_to_stage_prefetch() -> Prefetch:
    """A staging job's packages that a worker must stage (not the reused ones), with their files and
    archive copies, as ``job.items_to_stage``."""
    archive_copies = RawDataPackageCopy.objects.present().filter(
        location__location_type=LocationType.LONG_TERM_ARCHIVE
    )
    items = (
        StagingJobPackage.objects.exclude(state=StagedPackageState.REUSED)
        .select_related("raw_package", "source_location__site")
        .prefetch_related(
            Prefetch("raw_package__files", queryset=RawDataFile.objects.order_by("relative_path")),
            Prefetch("raw_package__copies", queryset=archive_copies, to_attr="archive_copies"),
        )
        .order_by("raw_package__name")
    )
    return Prefetch("items", queryset=items, to_attr=ITEMS_TO_STAGE)


def items_to_stage(job: StagingJob) -> list[StagingJobPackage]:
    """``job.items_to_stage``, fetched (three queries) unless the job was loaded with the prefetch."""
    if not hasattr(job, ITEMS_TO_STAGE):
        fresh = StagingJob.objects.prefetch_related(items_to_stage_prefetch()).get(pk=job.pk)
        setattr(job, ITEMS_TO_STAGE, getattr(fresh, ITEMS_TO_STAGE))
    return getattr(job, ITEMS_TO_STAGE)
