"""Staging services: create, cancel, record as staged and notify scientists' staging requests.

The web forms, the API and the stage job handler all call these; none maps statuses itself, and
none calls back into the handler.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackage
from opsdb.roles import is_operator
from opsdb.services import job_cancel, job_claim, job_complete, lock_job, write_job_log
from staging.choices import StagedPackageState
from staging.explain import plain_error
from staging.models import StagingJob, StagingJobPackage
from staging.selectors import StagingPlan, absolute_path, items_to_stage, staged_dir, staging_plan

# Name under which ops-db itself "claims" a request whose packages are all already staged.
REUSE_WORKER = "ops-db (already staged)"


def staging_lifetime(days: int | None) -> timedelta | None:
    return None if days is None else timedelta(days=days)


def _destination_errors(location: DataLocation | None) -> list[str]:
    if location is None:
        return ["Choose a processing location to stage to."]
    if location.location_type != LocationType.PROCESSING:
        kind = location.get_location_type_display().lower()
        return [f"{location} is a {kind} location, not a processing area: choose a processing location."]
    if not location.active:
        return [f"{location} is not in use at the moment."]
    return []


def _lifetime_errors(lifetime: timedelta | None) -> list[str]:
    max_days = settings.STAGING_MAX_LIFETIME_DAYS
    if lifetime is not None and lifetime <= timedelta(0):
        return ["The lifetime must be at least one day."]
    if lifetime is not None and lifetime > timedelta(days=max_days):
        return [f"The lifetime can be at most {max_days} days."]
    return []


def _selection_errors(packages: list[RawDataPackage], plan: StagingPlan) -> list[str]:
    limit = settings.STAGING_SELECTION_MAX
    if not packages:
        return ["Select at least one package to stage."]
    if len(packages) > limit:
        return [f"A request can hold at most {limit} packages; split it into several."]
    missing = plan.not_archived
    if not missing:
        return []
    names = ", ".join(item.package.name for item in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return [f"Not archived anywhere yet, so they cannot be staged: {names}{more}. Remove them from the selection."]


def staging_job_check(*, raw_packages: Iterable[RawDataPackage], destination_location: DataLocation | None,
                      lifetime: timedelta | None = None) -> StagingPlan:
    """Validate a request and plan it (nothing changes); ValidationError with a field dict when refused."""
    packages = list(raw_packages)
    destination_errors = _destination_errors(destination_location)
    # Reuse is only looked for at a valid destination; sources are chosen either way.
    plan = staging_plan(raw_packages=packages, destination=None if destination_errors else destination_location)
    errors = {
        "destination_location": destination_errors,
        "lifetime": _lifetime_errors(lifetime),
        "raw_packages": _selection_errors(packages, plan),
    }
    errors = {field: messages for field, messages in errors.items() if messages}
    if errors:
        raise ValidationError(errors)
    return plan


@transaction.atomic
def staging_job_create(*, owner: AbstractBaseUser, raw_packages: Iterable[RawDataPackage],
                       destination_location: DataLocation | None, lifetime: timedelta | None = None,
                       note: str = "") -> StagingJob:
    """Create a staging request; packages staged and alive there are reused, all reused → READY at once."""
    plan = staging_job_check(raw_packages=raw_packages, destination_location=destination_location,
                             lifetime=lifetime)
    job = StagingJob(owner=owner, destination_location=destination_location, note=note)
    if lifetime is not None:
        job.lifetime = lifetime
    job.save()
    now = timezone.now()
    StagingJobPackage.objects.bulk_create([
        StagingJobPackage(
            job=job, raw_package=item.package, source_location=item.source,
            state=StagedPackageState.REUSED if item.reused else StagedPackageState.PENDING,
            bytes_staged=item.package.size if item.reused else 0, staged_at=now if item.reused else None,
        )
        for item in plan.items
    ])
    # Keep reused data alive at least as long as this request could need it.
    extend_file_expiry(job=job, until=now + job.lifetime)
    if not plan.to_stage:
        job = _complete_without_worker(job)
    return job


def _complete_without_worker(job: StagingJob) -> StagingJob:
    """Everything is already staged: through the state machine (claim, complete) with no worker."""
    job = job_claim(job=job, worker=REUSE_WORKER, lease_seconds=60)
    job, _ = job_complete(job=job, lease_token=job.lease_token,
                          apply=lambda locked: staging_job_record_staged(job=locked, packages=[]))
    return job


def staging_job_record_staged(*, job: StagingJob, packages: list[dict] | None) -> None:
    """Record a worker's report that ``job`` is staged, before ACTIVE → READY (in ``job_complete``).

    One file access record per staged file, expiring with the job; its packages STAGED; the
    owner's email once the transaction commits. ValidationError (``packages``) unless the report
    names every file of every package to stage, with matching checksums and relative paths.
    """
    items = items_to_stage(job)
    reports = _validated_reports(items, packages)
    now = timezone.now()
    expires_at = now + job.lifetime
    _record_file_copies(job, items, reports, now, expires_at)
    _mark_items_staged(items, now)
    job.expires_at = expires_at
    extend_file_expiry(job=job, until=expires_at)
    notify_on_commit(job)


def _validated_reports(items: list[StagingJobPackage], packages: list[dict] | None) -> dict[str, dict]:
    """Reported files by package name and relative path; ValidationError unless complete and matching."""
    if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
        raise ValidationError({"packages": ["A list of staged packages is required."]})
    reported: dict[str, dict[str, dict]] = {}
    for entry in packages:
        files = entry.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise ValidationError({"packages": [f"Package {entry.get('name')!r}: a list of files is required."]})
        reported[str(entry.get("name"))] = {str(f.get("relative_path")): f for f in files}
    expected = {item.raw_package.name: item for item in items}
    errors = [f"Not a package of this job: {name}." for name in sorted(set(reported) - set(expected))]
    for name, item in expected.items():
        errors.extend(_package_errors(item, reported.get(name)))
    if errors:
        raise ValidationError({"packages": errors})
    return reported


def _package_errors(item: StagingJobPackage, files: dict[str, dict] | None) -> list[str]:
    name = item.raw_package.name
    if files is None:
        return [f"Package {name} is missing from the report."]
    errors = []
    for raw_file in item.raw_package.files.all():
        report = files.get(raw_file.relative_path)
        if report is None:
            errors.append(f"Package {name}: file {raw_file.relative_path} is missing.")
        elif str(report.get("checksum", "")).lower() != raw_file.checksum.lower():
            errors.append(f"Package {name}: checksum mismatch for {raw_file.relative_path}.")
        elif "path" in report and not _safe_relative(str(report["path"])):
            errors.append(f"Package {name}: path of {raw_file.relative_path} must be relative to the "
                          "location's base path.")
    return errors


def _safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(path) and not path.startswith("/") and ".." not in parts


def _record_file_copies(job: StagingJob, items: list[StagingJobPackage], reports: dict[str, dict],
                        now: datetime, expires_at: datetime) -> None:
    copies = []
    for item in items:
        files = reports[item.raw_package.name]
        for raw_file in item.raw_package.files.all():
            report = files[raw_file.relative_path]
            path = str(report.get("path") or f"{staged_dir(item.raw_package.name)}/{raw_file.relative_path}")
            copies.append(RawDataFileCopy(
                raw_file=raw_file, location_id=job.destination_location_id, status=CopyStatus.PRESENT,
                path=path, checksum_verified=raw_file.checksum, verified_at=now, expires_at=expires_at,
                created_at=now, updated_at=now,
            ))
    # A file staged here before (expired, cleaned up) gets its record back rather than a duplicate.
    RawDataFileCopy.objects.bulk_create(
        copies, update_conflicts=True, unique_fields=["raw_file", "location"],
        update_fields=["status", "path", "checksum_verified", "verified_at", "expires_at", "updated_at"],
    )


def extend_file_expiry(*, job: StagingJob, until: datetime) -> int:
    """Push the expiry of the reused packages' file access records to at least ``until``."""
    reused = job.items.filter(state=StagedPackageState.REUSED).values("raw_package_id")
    return RawDataFileCopy.objects.filter(
        location_id=job.destination_location_id, status=CopyStatus.PRESENT, raw_file__package_id__in=reused,
    ).filter(Q(expires_at__isnull=False) & Q(expires_at__lt=until)).update(expires_at=until)


CANCEL_REFUSALS = {
    JobStatus.ACTIVE: "A worker is copying this request's data right now, so it cannot be cancelled at this "
                      "moment. Try again when the current attempt has ended.",
    JobStatus.READY: "This request is already finished: the data is ready.",
    JobStatus.CANCELLED: "This request is already cancelled.",
}


@transaction.atomic
def staging_job_cancel(*, job: StagingJob, by: AbstractBaseUser) -> StagingJob:
    """Cancel a request that is waiting (PENDING) or failed; TransitionNotAllowed with a reason otherwise.

    An ACTIVE request is refused: the fixed state machine has no ACTIVE → CANCELLED, and a worker
    holding the lease must be able to report its result.
    """
    if job.owner_id != by.pk and not is_operator(by):
        raise PermissionDenied("Only the owner of a request or an operator can cancel it.")
    job = lock_job(job)
    if job.status in CANCEL_REFUSALS:
        raise TransitionNotAllowed(CANCEL_REFUSALS[job.status], object=job, method=job.cancel)
    job = job_cancel(job=job, by=by, reason=f"cancelled by {by}")
    write_job_log(job=job, message=f"Cancelled by {by.get_username()}.", worker="")
    return job


def _check_ready_and_yours(job: StagingJob, by: AbstractBaseUser, action: str) -> None:
    if job.owner_id != by.pk and not is_operator(by):
        raise PermissionDenied(f"Only the owner of a request or an operator can {action} it.")
    if job.status != JobStatus.READY or job.cleaned_at is not None:
        raise TransitionNotAllowed(f"Only a request whose data is ready can be {action}ed "
                                   f"(this one is {job.get_status_display().lower()}"
                                   f"{', and its files were removed' if job.cleaned_at else ''}).",
                                   object=job, method=job.complete)
    if job.expires_at is not None and job.expires_at <= timezone.now():
        raise TransitionNotAllowed("This request's lifetime is over: its files are being removed.",
                                   object=job, method=job.complete)


def _files_of(job: StagingJob):
    return RawDataFileCopy.objects.filter(
        location_id=job.destination_location_id, status=CopyStatus.PRESENT,
        raw_file__package_id__in=job.items.values("raw_package_id"),
    )


@transaction.atomic
def staging_job_extend(*, job: StagingJob, days: int, by: AbstractBaseUser) -> StagingJob:
    """Keep a READY request's data ``days`` longer, its lifetime at most ``STAGING_MAX_LIFETIME_DAYS`` in all.

    The owner gets an email and the request's history a line. ValidationError (``days``) when the
    lifetime would pass the maximum; TransitionNotAllowed when the data is not (or no longer) ready.
    """
    job = lock_job(job)
    _check_ready_and_yours(job, by, "extend")
    max_days = settings.STAGING_MAX_LIFETIME_DAYS
    room = max_days - job.lifetime.days
    if days < 1 or days > room:
        raise ValidationError({"days": f"You can add 1 to {room} day(s): the data is kept at most {max_days} days "
                                       f"in all, and this request already has {job.lifetime.days}."
                               if room > 0 else f"This request already has the maximum lifetime of {max_days} days."})
    job.lifetime += timedelta(days=days)
    job.expires_at = (job.expires_at or timezone.now()) + timedelta(days=days)
    job.save(update_fields=["lifetime", "expires_at", "updated_at"])
    _files_of(job).filter(expires_at__lt=job.expires_at).update(expires_at=job.expires_at)
    until = f"{job.expires_at:%Y-%m-%d %H:%M} UTC"
    write_job_log(job=job, message=f"Extended by {days} day(s) by {by.get_username()}: kept until {until}.", worker="")
    _email_on_commit(job, f"Your staging request #{job.pk} is kept until {until}",
                     f"The staged data of your request #{job.pk} at {job.destination_location} is now kept until "
                     f"{until} (extended by {days} day(s) by {by.get_username()}).\n")
    return job


@transaction.atomic
def staging_job_release(*, job: StagingJob, by: AbstractBaseUser) -> StagingJob:
    """Give up a READY request's staged data now: its lifetime ends and the scheduler removes the files.

    Files that another live request also uses stay. The owner gets an email; the history a line.
    """
    job = lock_job(job)
    _check_ready_and_yours(job, by, "release")
    job.expires_at = timezone.now()
    job.save(update_fields=["expires_at", "updated_at"])
    write_job_log(job=job, message=f"Released early by {by.get_username()}: the staged files are removed now.",
                  worker="")
    _email_on_commit(job, f"Your staging request #{job.pk} was released",
                     f"The staged data of your request #{job.pk} at {job.destination_location} was released by "
                     f"{by.get_username()} and is being removed.\n")
    return job


def _email_on_commit(job: StagingJob, subject: str, body: str) -> None:
    owner = job.owner
    if owner.email:
        transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [owner.email]))


def staging_items_mark_staged(*, job: StagingJob, names: Iterable[str]) -> int:
    """Mark the named packages of ``job`` STAGED (heartbeat ``items_done``); returns how many changed.

    Unknown names are refused with a ValidationError on ``items_done``; reused or already staged
    packages are left as they are.
    """
    names = set(names)
    if not names:
        return 0
    items = job.items.filter(raw_package__name__in=names).select_related("raw_package")
    known = {item.raw_package.name for item in items}
    unknown = sorted(names - known)
    if unknown:
        raise ValidationError({"items_done": [f"Not packages of this staging job: {', '.join(unknown[:10])}."]})
    now = timezone.now()
    changed = [item for item in items if item.state in (StagedPackageState.PENDING, StagedPackageState.FAILED)]
    for item in changed:
        item.staged_at = None  # staged now, whatever an earlier attempt recorded
    _mark_items_staged(changed, now)
    return len(changed)


def _mark_items_staged(items: list[StagingJobPackage], now) -> None:
    """Items STAGED with their whole size; one that was staged earlier keeps its time. One UPDATE."""
    for item in items:
        item.state, item.bytes_staged, item.staged_at, item.error = (
            StagedPackageState.STAGED, item.raw_package.size, item.staged_at or now, ""
        )
    StagingJobPackage.objects.bulk_update(items, ["state", "bytes_staged", "staged_at", "error"])


def staging_job_notify(job: StagingJob) -> bool:
    """Email the owner that the request is READY or FAILED; False when there is nothing to send."""
    job = StagingJob.objects.select_related("owner", "destination_location__site").get(pk=job.pk)
    if not job.owner.email or job.status not in (JobStatus.READY, JobStatus.FAILED):
        return False
    count = job.items.count()
    location = job.destination_location
    if job.status == JobStatus.READY:
        subject = f"Your staging request #{job.pk} is ready"
        body = (
            f"The {count} package(s) of your staging request #{job.pk} are ready at {location}, under\n"
            f"  {absolute_path(location, 'staged/')}\n"
            f"They stay there until {job.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )
    else:
        subject = f"Your staging request #{job.pk} failed"
        body = (
            f"Your staging request #{job.pk} ({count} package(s) to {location}) failed after "
            f"{job.attempts} attempt(s).\n{plain_error(job.last_error)}\n"
            "The operators have been told and can retry it; you can also cancel it.\n\n"
            f"Technical detail: {job.last_error}\n"
        )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [job.owner.email])
    return True


def notify_on_commit(job: StagingJob) -> None:
    """Send the owner's email once the transaction that finished ``job`` has committed."""
    transaction.on_commit(lambda: staging_job_notify(job))
