"""Deleting copies: the ``delete`` job kind and the copies each job covers."""

from django.db import models
from django.db.models import Q

from opsdb.choices import JobKind, JobStatus
from opsdb.leases import LeasedJob, claim_order_index
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from transfers.models import DataTransferPackageCopy


class DeletionJob(LeasedJob):
    """Removing the files of some copies at one location (job kind ``delete``), made by the deletion pass.

    Its copies are DELETION_SCHEDULED while it waits, DELETION_IN_PROGRESS once a worker claimed
    it, then DELETED (or back to DELETION_SCHEDULED after a failed attempt, DELETION_FAILED after
    the last one). The worker reports on every copy.
    """

    KIND = JobKind.DELETE
    DONE = JobStatus.COMPLETED

    location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="deletion_jobs")
    reason = models.CharField(max_length=500, blank=True, help_text="Why these copies may go.")
    size = models.BigIntegerField(default=0, help_text="Bytes the job frees (the copies' sizes).")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="deletionjob_status_due"),
            models.Index(fields=["status", "id"], name="deletionjob_status_id"),
            claim_order_index("deletionjob"),
        ]

    def __str__(self) -> str:
        return f"delete #{self.pk} at {self.location}"


class DeletionOutcome(models.TextChoices):
    WAITING = "WAITING", "Waiting"
    DELETED = "DELETED", "Deleted"
    GONE = "GONE", "Already gone"
    FAILED = "FAILED", "Failed"
    KEPT = "KEPT", "Kept (no longer to be deleted)"


class DeletionItem(models.Model):
    """One copy a deletion job covers: exactly one of the three copy references is set."""

    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="items")
    raw_package_copy = models.ForeignKey(RawDataPackageCopy, null=True, blank=True, on_delete=models.CASCADE,
                                         related_name="deletion_items")
    transfer_package_copy = models.ForeignKey(DataTransferPackageCopy, null=True, blank=True,
                                              on_delete=models.CASCADE, related_name="deletion_items")
    file_copy = models.ForeignKey(RawDataFileCopy, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="deletion_items")
    path = models.CharField(max_length=1024, help_text="Relative to the location's base path.")
    size = models.BigIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=DeletionOutcome.choices, default=DeletionOutcome.WAITING)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["job_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(raw_package_copy__isnull=False, transfer_package_copy__isnull=True, file_copy__isnull=True)
                    | Q(raw_package_copy__isnull=True, transfer_package_copy__isnull=False, file_copy__isnull=True)
                    | Q(raw_package_copy__isnull=True, transfer_package_copy__isnull=True, file_copy__isnull=False)
                ),
                name="deletionitem_one_copy",
            ),
            models.CheckConstraint(condition=Q(outcome__in=DeletionOutcome.values), name="deletionitem_outcome_valid"),
            # A copy waits in one delete job at most: two jobs never delete the same file.
            *[models.UniqueConstraint(fields=[field], condition=Q(outcome="WAITING", **{f"{field}__isnull": False}),
                                      name=f"deletionitem_{field}_waiting_once")
              for field in ("raw_package_copy", "transfer_package_copy", "file_copy")],
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def copy(self):
        return self.raw_package_copy or self.transfer_package_copy or self.file_copy
