"""Where data is: sites, their storage locations, the raw data catalogue and its physical copies."""

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from opsdb.choices import ChecksumAlgorithm, CopyStatus, DeletionPolicy, LocationType, LogLevel, StorageType

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]*$", "Use lower-case letters, digits, '-' and '_', starting with a letter or digit."
)

# Names and relative paths that become file paths at the sites (``raw/<package name>``, a file in a
# package): ASCII letters, digits and . _ + -, each part starting with a letter, digit, _ or +, so
# no part is "." or "..", hidden, absolute, empty, or read as an option ("-x") by a copy command.
FILE_NAME_PART = r"[A-Za-z0-9_+][A-Za-z0-9._+-]*"
file_name_validator = RegexValidator(
    rf"\A{FILE_NAME_PART}\Z",
    "Use letters, digits and . _ + - only, starting with a letter, digit, _ or + (the name becomes a file name).",
)
relative_path_validator = RegexValidator(
    rf"\A{FILE_NAME_PART}(/{FILE_NAME_PART})*\Z",
    "Give a path relative to the location's base path: parts of letters, digits and . _ + -, each starting "
    "with a letter, digit, _ or +, separated by single '/' (no '..', no leading or trailing '/').",
)


class Site(models.Model):
    """A place with storage, e.g. the telescope site in Chile or an archive centre."""

    name = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DataLocationQuerySet(models.QuerySet):
    def active(self):
        return self.filter(active=True)

    def of_type(self, location_type: str):
        return self.filter(location_type=location_type)

    def for_site(self, site):
        return self.filter(site=site)


class DataLocation(models.Model):
    """A storage area at a site: a folder, bucket or tape pool of one type."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="locations")
    name = models.CharField(max_length=100, validators=[slug_validator])
    location_type = models.CharField(max_length=20, choices=LocationType.choices)
    storage_type = models.CharField(max_length=10, choices=StorageType.choices, default=StorageType.DISK)
    base_path = models.CharField(max_length=1024, help_text="Folder path or URI (s3://bucket/prefix).")
    host = models.CharField(max_length=255, blank=True, help_text="Host that serves this storage, if remote.")
    capacity_bytes = models.BigIntegerField(null=True, blank=True)
    priority = models.IntegerField(default=0, help_text="Among a site's locations of one type, higher is used first.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Custody: when copies here are deleted once the deletion rule allows it (docs/custody.md).
    deletion_policy = models.CharField(
        max_length=20, choices=DeletionPolicy.choices, default=DeletionPolicy.NEVER,
        help_text="NEVER for archives; WHEN_SAFE empties a buffer as soon as its data is archived; "
                  "UNDER_PRESSURE keeps archived data until the high watermark of the capacity is passed.",
    )
    high_watermark_percent = models.PositiveSmallIntegerField(
        default=80, help_text="UNDER_PRESSURE: deletion starts when the copies here use more than this % of capacity.")
    low_watermark_percent = models.PositiveSmallIntegerField(
        default=70, help_text="UNDER_PRESSURE: … and stops once they use no more than this %.")
    deletion_enabled = models.BooleanField(
        default=True, help_text="Operators' switch: off, nothing here is scheduled for deletion nor deleted.")
    deletion_paused_reason = models.CharField(
        max_length=500, blank=True, default="",
        help_text="Set when deletion paused itself here (too many failures); clear it to resume.")
    deletion_paused_at = models.DateTimeField(null=True, blank=True)
    # Counted by the delete jobs' reports, read and reset by the deletion pass (which pauses on many).
    deletion_failures_recent = models.PositiveIntegerField(default=0, editable=False)
    deletion_last_error = models.CharField(max_length=500, blank=True, default="", editable=False)
    # UNDER_PRESSURE: the last deletion pass stopped at DELETION_MAX_COPIES_PER_PASS above the low
    # watermark, so the next passes go on down to it (even once under the high watermark).
    deletion_draining = models.BooleanField(default=False, db_default=False, editable=False)

    history = HistoricalRecords(excluded_fields=["deletion_failures_recent", "deletion_last_error",
                                                 "deletion_draining"])
    objects = DataLocationQuerySet.as_manager()

    class Meta:
        ordering = ["site__name", "location_type", "-priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="location_unique_name_per_site"),
            models.CheckConstraint(
                condition=Q(capacity_bytes__isnull=True) | Q(capacity_bytes__gte=0),
                name="location_capacity_not_negative",
                violation_error_message="Capacity cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(location_type__in=LocationType.values), name="location_type_valid"
            ),
            models.CheckConstraint(condition=Q(storage_type__in=StorageType.values), name="location_storage_valid"),
            models.CheckConstraint(condition=~Q(base_path=""), name="location_base_path_not_empty"),
            models.CheckConstraint(condition=Q(deletion_policy__in=DeletionPolicy.values),
                                   name="location_deletion_policy_valid"),
            models.CheckConstraint(
                condition=Q(low_watermark_percent__lt=F("high_watermark_percent"), high_watermark_percent__lte=100),
                name="location_watermarks_ordered",
                violation_error_message="The low watermark must be below the high watermark, which is at most 100 %.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site.name}:{self.name}"

    @property
    def deletes(self) -> bool:
        """Copies here may be scheduled for deletion now (a policy other than NEVER, enabled, not paused)."""
        return (self.deletion_policy != DeletionPolicy.NEVER and self.deletion_enabled
                and not self.deletion_paused_reason)


class Instrument(models.Model):
    """A receiver or camera on the telescope (e.g. Prime-Cam, CHAI)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Observation(models.Model):
    """An executed observation unit: what scientists search by."""

    obs_id = models.CharField("observation id", max_length=100, unique=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="observations")
    target_name = models.CharField(max_length=200, db_index=True)
    start_time = models.DateTimeField(db_index=True)
    end_time = models.DateTimeField()

    class Meta:
        ordering = ["-start_time"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_time__gte=F("start_time")),
                name="observation_ends_after_start",
                violation_error_message="An observation cannot end before it starts.",
            ),
        ]

    def __str__(self) -> str:
        return self.obs_id


class RawDataPackage(models.Model):
    """An archive of the raw files of one observation: the unit of raw data bookkeeping."""

    name = models.CharField(max_length=255, unique=True, validators=[file_name_validator])
    observation = models.ForeignKey(Observation, on_delete=models.PROTECT, related_name="packages")
    size = models.BigIntegerField(help_text="Bytes.")
    checksum = models.CharField(max_length=128)
    checksum_algorithm = models.CharField(
        max_length=10, choices=ChecksumAlgorithm.choices, default=ChecksumAlgorithm.SHA256
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Scheduler bookkeeping, a cache of a fact (a membership row exists) that the bundling pass
    # keeps: with the partial index below, a pass reads only packages still waiting, not history.
    bundled = models.BooleanField(default=False, editable=False, help_text="In a transfer package.")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["id"], condition=Q(bundled=False), name="rawpackage_unbundled")]
        constraints = [
            models.CheckConstraint(
                condition=Q(size__gte=0), name="rawpackage_size_not_negative",
                violation_error_message="Size cannot be negative.",
            ),
            models.CheckConstraint(condition=~Q(checksum=""), name="rawpackage_checksum_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class RawDataFile(models.Model):
    """One file of an observation, stored inside a raw data package."""

    package = models.ForeignKey(RawDataPackage, on_delete=models.CASCADE, related_name="files")
    relative_path = models.CharField(max_length=1024, validators=[relative_path_validator])
    size = models.BigIntegerField(help_text="Bytes.")
    checksum = models.CharField(max_length=128)
    checksum_algorithm = models.CharField(
        max_length=10, choices=ChecksumAlgorithm.choices, default=ChecksumAlgorithm.SHA256
    )

    class Meta:
        ordering = ["package_id", "relative_path"]
        constraints = [
            models.UniqueConstraint(fields=["package", "relative_path"], name="rawfile_unique_path_per_package"),
            models.CheckConstraint(
                condition=Q(size__gte=0), name="rawfile_size_not_negative",
                violation_error_message="Size cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return self.relative_path


class CopyQuerySet(models.QuerySet):
    def present(self):
        return self.filter(status=CopyStatus.PRESENT)

    def verified(self):
        """The copies that count as copies: PRESENT with a verified checksum."""
        return self.present().exclude(checksum_verified="").filter(verified_at__isnull=False)

    def at(self, location):
        return self.filter(location=location)


class PhysicalCopy(ConcurrentTransitionMixin, models.Model):
    """One physical copy of an object at a storage location. *Where is X?* is answered only from these.

    Its status changes only through the transitions below (recorded by django-fsm-log); the services
    in ``opsdb.copies`` lock the row, or move a whole set at once with the same transitions.
    """

    location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="+")
    status = FSMField(max_length=24, choices=CopyStatus.choices, default=CopyStatus.PRESENT, protected=True,
                      db_index=True)
    path = models.CharField(max_length=1024, help_text="Relative to the location's base path.")
    checksum_verified = models.CharField(max_length=128, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    deletion_failures = models.PositiveIntegerField(
        default=0, db_default=0, editable=False,  # db_default: rows inserted with SQL (bulk loads) get it too
        help_text="Failed attempts to delete it since it was scheduled or last retried.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CopyQuerySet.as_manager()

    class Meta:
        abstract = True

    def clean_fields(self, exclude=None):
        # Model validation re-assigns every field; the protected status only changes by transition.
        super().clean_fields(exclude={*(exclude or ()), "status"})

    @property
    def is_verified(self) -> bool:
        return self.status == CopyStatus.PRESENT and bool(self.checksum_verified) and self.verified_at is not None

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.PRESENT, target=CopyStatus.DELETION_SCHEDULED)
    def schedule_deletion(self, *, by=None, description=None):
        """PRESENT → DELETION_SCHEDULED: the deletion rule allows it and the location's policy wants the space."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.DELETION_SCHEDULED, target=CopyStatus.DELETION_IN_PROGRESS)
    def start_deletion(self, *, by=None, description=None):
        """DELETION_SCHEDULED → DELETION_IN_PROGRESS: a worker claimed the delete job and removes the file."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.DELETION_IN_PROGRESS, target=CopyStatus.DELETED)
    def mark_deleted(self, *, by=None, description=None):
        """DELETION_IN_PROGRESS → DELETED: the worker removed the file (or found it already gone)."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.DELETION_IN_PROGRESS, target=CopyStatus.DELETION_SCHEDULED)
    def release_deletion(self, *, by=None, description=None):
        """DELETION_IN_PROGRESS → DELETION_SCHEDULED: an attempt failed or its lease ran out; the next one retries."""
        self.deletion_failures += 1

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.DELETION_IN_PROGRESS, target=CopyStatus.DELETION_FAILED)
    def fail_deletion(self, *, by=None, description=None):
        """DELETION_IN_PROGRESS → DELETION_FAILED: the last attempt failed; an operator looks at it."""
        self.deletion_failures += 1

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=CopyStatus.DELETION_FAILED, target=CopyStatus.DELETION_SCHEDULED)
    def retry_deletion(self, *, by=None, description=None):
        """DELETION_FAILED → DELETION_SCHEDULED: an operator asks for the deletion again, with fresh attempts."""
        self.deletion_failures = 0

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[CopyStatus.DELETION_SCHEDULED, CopyStatus.DELETION_FAILED],
                target=CopyStatus.PRESENT)
    def keep(self, *, by=None, description=None):
        """DELETION_SCHEDULED/DELETION_FAILED → PRESENT: the deletion is called off; the file is still there."""
        self.deletion_failures = 0

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[CopyStatus.PRESENT, CopyStatus.MISSING], target=CopyStatus.MISMATCH)
    def mark_mismatch(self, *, by=None, description=None):
        """PRESENT/MISSING → MISMATCH: an audit read the file and its checksum differs; no longer a safe copy."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[CopyStatus.PRESENT, CopyStatus.MISMATCH], target=CopyStatus.MISSING)
    def mark_missing(self, *, by=None, description=None):
        """PRESENT/MISMATCH → MISSING: an audit found no file; no longer a safe copy."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[CopyStatus.MISMATCH, CopyStatus.MISSING, CopyStatus.DELETED,
                                      CopyStatus.DELETION_FAILED, CopyStatus.DELETION_SCHEDULED],
                target=CopyStatus.PRESENT)
    def restore(self, *, by=None, description=None):
        """MISMATCH/MISSING/DELETED/DELETION_FAILED/DELETION_SCHEDULED → PRESENT: a good copy is there
        (again): re-checked, repaired, or recorded anew by a transfer, unpack or archive."""
        self.deletion_failures = 0


class RawDataPackageCopy(PhysicalCopy):
    """A raw data package's archive present (or once present) at a location."""

    raw_package = models.ForeignKey(RawDataPackage, on_delete=models.CASCADE, related_name="copies")
    # Scheduler bookkeeping, a cache of a fact the archiving pass keeps: the package has an archive
    # transfer, or an archived copy, at this copy's site. A pass reads only copies without it.
    archive_planned = models.BooleanField(
        default=False, editable=False, help_text="Has an archive transfer or archived copy at this site."
    )

    class Meta:
        verbose_name_plural = "raw data package copies"
        constraints = [
            models.UniqueConstraint(fields=["raw_package", "location"], name="rawpackagecopy_one_per_location"),
        ]
        indexes = [
            models.Index(fields=["location", "status"], name="rawpackagecopy_loc_status"),
            # The admin's copies at a location (or a site's only location), newest first.
            models.Index(fields=["location", "id"], name="rawpackagecopy_loc_id"),
            models.Index(fields=["location"], condition=Q(status=CopyStatus.PRESENT, archive_planned=False),
                         name="rawpackagecopy_to_archive"),
        ]
        # Fixity audits read a location's PRESENT copies oldest-verified (never verified first) through
        # the index rawpackagecopy_fixity_due (migration 0011: NULLS FIRST is written per database).

    def __str__(self) -> str:
        return f"{self.raw_package} @ {self.location}"


class RawDataFileCopy(PhysicalCopy):
    """A file access record: a raw file unpacked at a (processing) location by staging."""

    raw_file = models.ForeignKey(RawDataFile, on_delete=models.CASCADE, related_name="copies")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Cleaned up after this time.")

    class Meta:
        verbose_name_plural = "file access records (raw file copies)"
        constraints = [
            models.UniqueConstraint(fields=["raw_file", "location"], name="rawfilecopy_one_per_location"),
        ]
        indexes = [
            models.Index(fields=["location", "status"], name="rawfilecopy_loc_status"),
            models.Index(fields=["location", "id"], name="rawfilecopy_loc_id"),  # the admin's copies at a location
        ]

    def __str__(self) -> str:
        return f"{self.raw_file} @ {self.location}"


def validate_location_type(location: DataLocation | None, expected: str, field: str) -> None:
    """Raise a field error when ``location`` is not of the ``expected`` type."""
    if location is not None and location.location_type != expected:
        label = LocationType(expected).label.lower()
        raise ValidationError({field: f"{location} is a {location.get_location_type_display().lower()} "
                                      f"location, not a {label} location."})


class WorkerProfile(models.Model):
    """A worker account's restrictions: the sites whose jobs it may see and claim (none = every site)."""

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="worker_profile")
    sites = models.ManyToManyField(
        Site, blank=True, related_name="workers", help_text="Sites whose jobs this worker may claim; empty = all."
    )

    class Meta:
        verbose_name = "worker"

    def __str__(self) -> str:
        return f"worker {self.user}"


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A worker's API token, kept only as its SHA-256 digest: the token itself is shown once, at creation.

    Revoking keeps the row (who had which token, until when); rotating revokes one and makes another.
    ``last_used_at`` is written at most once a minute per server process (``opsdb.tokens``).
    """

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What it is for, e.g. the host it is installed on.")
    prefix = models.CharField(max_length=16, editable=False, help_text="Its first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, editable=False,
                                   related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        indexes = [models.Index(fields=["user", "revoked_at"], name="opsdb_apitoken_user_active")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})" if self.user_id else f"{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# The job log: every kind's short lines (its name is historical: it began with transfers).
LOG_MESSAGE_MAX_LENGTH = 500
REASON_MAX_LENGTH = 500  # an operator's reason for a transition (retry, cancel, pause, resume)


class DataTransferLog(models.Model):
    """A short log line about a leased job of any kind, pointing at the detailed log file; metrics go elsewhere."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    job = GenericForeignKey("content_type", "object_id")
    level = models.CharField(max_length=10, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.CharField(max_length=LOG_MESSAGE_MAX_LENGTH)
    log_path = models.CharField(max_length=1024, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "transfers_datatransferlog"  # the table it was created with
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["content_type", "object_id"], name="transferlog_job"),
            # The admin's level filter, in the list's order (newest first): a rare level is found
            # without reading the table.
            models.Index(fields=["level", "created_at", "id"], name="transferlog_level_time"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("message"), LOG_MESSAGE_MAX_LENGTH),
                name="transferlog_message_short",
                violation_error_message=f"Log messages are at most {LOG_MESSAGE_MAX_LENGTH} characters; "
                "put details in the log file.",
            ),
            models.CheckConstraint(condition=Q(level__in=LogLevel.values), name="transferlog_level_valid"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"
