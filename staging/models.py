"""Archive and retrieval inside a site: long-term archive transfers and scientists' staging jobs."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from opsdb.choices import JobKind, JobStatus, LocationType, TransferMethod
from opsdb.leases import LeasedJob, open_job_indexes, partial_data_index
from opsdb.models import DataLocation, RawDataPackage, RawDataPackageCopy, validate_location_type
from staging.choices import FixityOutcome, StagedPackageState

# Where an archive transfer may read: a buffer (raw data arriving), or a processing area (data
# products registered there, "results come home").
ARCHIVE_SOURCE_TYPES = (LocationType.BUFFER, LocationType.PROCESSING)


class LongTermArchiveTransfer(LeasedJob):
    """Copies a raw data package from a site's buffer (or processing area) into the same site's long-term archive.

    Automatic and fire-and-forget; after 3 failed attempts it waits for an operator
    (``requires_intervention``).
    """

    KIND = JobKind.ARCHIVE
    DONE = JobStatus.COMPLETED

    raw_package = models.ForeignKey(RawDataPackage, on_delete=models.PROTECT, related_name="archive_transfers")
    source_location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="archive_transfers_out")
    destination_location = models.ForeignKey(
        DataLocation, on_delete=models.PROTECT, related_name="archive_transfers_in"
    )
    requires_intervention = models.BooleanField(default=False, db_index=True)
    # A repair: the archive copy an audit found bad, brought back from another verified copy (which
    # may be at another site: then by the method of the route between the sites).
    repair_of = models.ForeignKey(
        RawDataPackageCopy, null=True, blank=True, on_delete=models.PROTECT, related_name="repairs",
        help_text="The archive copy this transfer repairs (found MISMATCH or MISSING by an audit).",
    )
    method = models.CharField(max_length=10, choices=TransferMethod.choices, default=TransferMethod.COPY)

    class Meta:
        ordering = ["-created_at"]
        # API lists filtered by status, newest id first
        indexes = [models.Index(fields=["status", "id"], name="archive_status_id"), partial_data_index("archive"),
                   *open_job_indexes("archive", "source_location"),
                   # the transfers waiting for an operator, newest first (the operations view groups them)
                   models.Index(fields=["-id"], condition=Q(status=JobStatus.FAILED, requires_intervention=True),
                                name="archive_attention")]
        constraints = [
            models.UniqueConstraint(
                fields=["raw_package", "destination_location"], condition=Q(repair_of__isnull=True),
                name="archive_once_per_package_and_archive",
            ),
            models.UniqueConstraint(
                fields=["repair_of"], condition=Q(status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)),
                name="archive_one_open_repair_per_copy",
            ),
            models.CheckConstraint(
                condition=~Q(source_location=models.F("destination_location")),
                name="archive_source_differs_from_destination",
            ),
        ]
        # Same-site and BUFFER/PROCESSING → LONG_TERM_ARCHIVE span tables: enforced by triggers (0002, 0007).

    def __str__(self) -> str:
        return f"archive {self.raw_package} → {self.destination_location}"

    @classmethod
    def max_attempts(cls) -> int:
        return settings.ARCHIVE_MAX_ATTEMPTS

    def _on_attempts_exhausted(self) -> None:
        self.requires_intervention = True

    def _on_retry(self) -> None:
        self.requires_intervention = False

    def clean(self) -> None:
        super().clean()
        if self.repair_of_id:
            validate_location_type(self._get_or_none("destination_location"), LocationType.LONG_TERM_ARCHIVE,
                                   "destination_location")
            return
        source = self._get_or_none("source_location")
        if source is not None and source.location_type not in ARCHIVE_SOURCE_TYPES:
            raise ValidationError({"source_location": f"{source} is a {source.get_location_type_display().lower()} "
                                                      "location; archive transfers read from a buffer or a "
                                                      "processing location."})
        validate_location_type(
            self._get_or_none("destination_location"), LocationType.LONG_TERM_ARCHIVE, "destination_location"
        )
        source, destination = self._get_or_none("source_location"), self._get_or_none("destination_location")
        if source and destination and source.site_id != destination.site_id:
            raise ValidationError(
                {"destination_location": f"The archive must be at the buffer's site ({source.site})."}
            )

    def _get_or_none(self, field: str):
        return getattr(self, field) if getattr(self, f"{field}_id") else None


def default_staging_lifetime() -> timedelta:
    return timedelta(days=settings.STAGING_DEFAULT_LIFETIME_DAYS)


class StagingJob(LeasedJob):
    """A scientist's request to make archived raw data packages available at a processing location."""

    KIND = JobKind.STAGE
    DONE = JobStatus.READY

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staging_jobs")
    destination_location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="staging_jobs")
    raw_packages = models.ManyToManyField(RawDataPackage, through="StagingJobPackage", related_name="staging_jobs")
    note = models.TextField(blank=True)
    lifetime = models.DurationField(default=default_staging_lifetime)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Staged data is cleaned up after this.")
    cleaned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # API lists filtered by status, newest id first
        indexes = [models.Index(fields=["status", "id"], name="staging_status_id"), partial_data_index("staging"),
                   *open_job_indexes("staging", "destination_location")]
        constraints = [
            models.CheckConstraint(
                condition=Q(lifetime__gt=timedelta(0)), name="staging_lifetime_positive",
                violation_error_message="The lifetime must be positive.",
            ),
        ]
        # Destination of type PROCESSING spans tables: enforced by a trigger (migration 0002).

    def __str__(self) -> str:
        return f"staging #{self.pk} for {self.owner}"

    def clean(self) -> None:
        super().clean()
        if self.destination_location_id:
            validate_location_type(self.destination_location, LocationType.PROCESSING, "destination_location")


class StagingJobPackage(models.Model):
    """One package of a staging job, with its own progress."""

    job = models.ForeignKey(StagingJob, on_delete=models.CASCADE, related_name="items")
    raw_package = models.ForeignKey(RawDataPackage, on_delete=models.PROTECT, related_name="staging_items")
    source_location = models.ForeignKey(
        DataLocation, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The archive it is staged from.",
    )
    state = models.CharField(max_length=10, choices=StagedPackageState.choices, default=StagedPackageState.PENDING)
    bytes_staged = models.BigIntegerField(default=0)
    staged_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["job_id", "raw_package_id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "raw_package"], name="stagingpackage_once_per_job"),
            models.CheckConstraint(condition=Q(bytes_staged__gte=0), name="stagingpackage_bytes_not_negative"),
            models.CheckConstraint(condition=Q(state__in=StagedPackageState.values), name="stagingpackage_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.raw_package} in {self.job}"



class FixityCheck(LeasedJob):
    """Re-reads one long-term archive copy of a raw package and compares its checksum (job kind ``verify``).

    A good result refreshes the copy's ``verified_at``; a mismatch or a missing file takes the copy out
    of service (MISMATCH / MISSING) and asks for a second look (``recheck``); a second bad result
    confirms it, and the scheduler's fixity pass repairs it (staging/fixity.py).
    """

    KIND = JobKind.VERIFY
    DONE = JobStatus.COMPLETED

    copy = models.ForeignKey(RawDataPackageCopy, on_delete=models.CASCADE, related_name="fixity_checks")
    # The copy's location and the package's size when the check was made: the daily budget and the
    # failure ratio are counted per location without joining the copies.
    location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="fixity_checks")
    size = models.BigIntegerField(help_text="Bytes to re-read.")
    recheck = models.BooleanField(default=False, help_text="The second look at a copy a first check found bad.")
    outcome = models.CharField(max_length=10, choices=FixityOutcome.choices, blank=True)
    checksum_found = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "id"], name="fixity_status_id"),
            models.Index(fields=["location", "finished_at"], name="fixity_location_finished"),
            models.Index(fields=["location", "created_at"], name="fixity_location_created"),
            partial_data_index("fixity"),
            *open_job_indexes("fixity", "location"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["copy"], condition=Q(status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)),
                name="fixity_one_open_check_per_copy",
            ),
            models.CheckConstraint(condition=Q(size__gte=0), name="fixity_size_not_negative"),
            models.CheckConstraint(condition=Q(outcome__in=["", *FixityOutcome.values]), name="fixity_outcome_valid"),
        ]

    def __str__(self) -> str:
        return f"verify copy #{self.copy_id} at {self.location_id}"


class FixityHold(models.Model):
    """Automatic repair stopped at a location: too many of one day's checks failed there.

    A mass failure is more likely a mount or storage problem than rot, so nothing is copied over
    the copies until an operator has looked and released the hold (the admin's action).
    """

    location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="fixity_holds")
    reason = models.CharField(max_length=500)
    checks = models.PositiveIntegerField(help_text="Checks finished in the day that tripped the hold.")
    failures = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["location"], condition=Q(released_at__isnull=True),
                                    name="fixity_one_open_hold_per_location"),
        ]

    def __str__(self) -> str:
        return f"repair held at {self.location_id} since {self.created_at:%Y-%m-%d %H:%M}"
