"""Enumerations shared across the apps."""

from django.db import models


class LocationType(models.TextChoices):
    SOURCE = "SOURCE", "Source"
    BUFFER = "BUFFER", "Buffer"
    LONG_TERM_ARCHIVE = "LONG_TERM_ARCHIVE", "Long-term archive"
    PROCESSING = "PROCESSING", "Processing"


class DeletionPolicy(models.TextChoices):
    """When copies at a location are deleted once the deletion rule allows it (docs/custody.md)."""

    NEVER = "NEVER", "Never (archives)"
    WHEN_SAFE = "WHEN_SAFE", "As soon as it is safe"
    UNDER_PRESSURE = "UNDER_PRESSURE", "When space is short (keep archived data as a cache)"


class StorageType(models.TextChoices):
    DISK = "DISK", "Disk"
    S3 = "S3", "S3"
    TAPE = "TAPE", "Tape"


class CopyStatus(models.TextChoices):
    """A physical copy's life: PRESENT → DELETION_SCHEDULED → DELETION_IN_PROGRESS → DELETED (or
    DELETION_FAILED); an audited archive copy can become MISMATCH or MISSING. Only a PRESENT copy
    with a verified checksum counts as a copy (``opsdb.models.CopyQuerySet.verified``)."""

    PRESENT = "PRESENT", "Present"
    DELETION_SCHEDULED = "DELETION_SCHEDULED", "Deletion scheduled"
    DELETION_IN_PROGRESS = "DELETION_IN_PROGRESS", "Deletion in progress"
    DELETED = "DELETED", "Deleted"
    DELETION_FAILED = "DELETION_FAILED", "Deletion failed"
    MISMATCH = "MISMATCH", "Checksum mismatch"
    MISSING = "MISSING", "Missing"


# A copy on its way out: the deletion rule, the planner and the storage figures no longer count it.
DELETION_STATUSES = (CopyStatus.DELETION_SCHEDULED, CopyStatus.DELETION_IN_PROGRESS)


class ChecksumAlgorithm(models.TextChoices):
    SHA256 = "sha256", "SHA-256"
    MD5 = "md5", "MD5"
    XXH64 = "xxh64", "xxHash64"


class JobStatus(models.TextChoices):
    """Every leased job's states; each kind finishes in one of the four "done" states."""

    PENDING = "PENDING", "Pending"
    ACTIVE = "ACTIVE", "Active"
    COMPLETED = "COMPLETED", "Completed"
    TRANSFERRED = "TRANSFERRED", "Transferred"
    UNPACKED = "UNPACKED", "Unpacked"
    READY = "READY", "Ready"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


DONE_STATUSES = (JobStatus.COMPLETED, JobStatus.TRANSFERRED, JobStatus.UNPACKED, JobStatus.READY)
OPEN_STATUSES = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)


class JobKind(models.TextChoices):
    """The job kinds' names in the worker protocol (URL segment /api/v1/work/<kind>/).

    Which kinds are served, and in which claim priority, is declared in ``settings.JOB_KINDS``.
    """

    PACKAGE = "package", "Build transfer package"
    TRANSFER = "transfer", "Transfer"
    UNPACK = "unpack", "Unpack"
    ARCHIVE = "archive", "Archive"
    STAGE = "stage", "Stage"
    DELETE = "delete", "Delete copies"
    VERIFY = "verify", "Verify an archive copy"


class TransferMethod(models.TextChoices):
    """How a worker moves bytes between locations (routes choose one; a claim may name the ones it can do)."""

    BBCP = "bbcp", "bbcp"
    S3 = "s3", "S3"
    RSYNC = "rsync", "rsync"
    COPY = "copy", "Local copy"


class LogLevel(models.TextChoices):
    DEBUG = "DEBUG", "Debug"
    INFO = "INFO", "Info"
    WARNING = "WARNING", "Warning"
    ERROR = "ERROR", "Error"
