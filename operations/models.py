"""The operations view's compact history, written by the scheduler's ``operations history`` pass.

Samples per route and hop and per location, one row per 5 minutes kept for 48 hours and one per
hour kept for 90 days; running totals of finished jobs and moved bytes (Prometheus counters that
every server process reads from the database); and where the pass stopped reading the transition
log.
"""

from django.db import models
from django.db.models import Q


class Resolution(models.TextChoices):
    FIVE_MINUTES = "5m", "5 minutes"
    HOUR = "1h", "1 hour"


class RouteSample(models.Model):
    """One route and hop over one time bucket: the queue at its last tick and what finished in it."""

    route = models.ForeignKey("transfers.DataTransferRoute", on_delete=models.CASCADE, related_name="+")
    hop = models.PositiveSmallIntegerField(default=1)
    resolution = models.CharField(max_length=2, choices=Resolution.choices)
    start = models.DateTimeField()
    queued_jobs = models.PositiveIntegerField(default=0, help_text="Pending at the bucket's last tick.")
    queued_bytes = models.BigIntegerField(default=0)
    active_jobs = models.PositiveIntegerField(default=0)
    failed_jobs = models.PositiveIntegerField(default=0, help_text="Waiting for an operator at the last tick.")
    succeeded = models.PositiveIntegerField(default=0, help_text="Transfers completed in the bucket.")
    failed_attempts = models.PositiveIntegerField(default=0, help_text="Attempts that failed in the bucket.")
    bytes_done = models.BigIntegerField(default=0, help_text="Bytes of the transfers completed in the bucket.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["route", "hop", "resolution", "start"], name="routesample_one_per_bucket"),
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="routesample_time")]

    def __str__(self) -> str:
        return f"route #{self.route_id} hop {self.hop} at {self.start:%Y-%m-%d %H:%M} ({self.resolution})"


class LocationSample(models.Model):
    """A location's used bytes at the last tick of a bucket."""

    location = models.ForeignKey("opsdb.DataLocation", on_delete=models.CASCADE, related_name="+")
    resolution = models.CharField(max_length=2, choices=Resolution.choices)
    start = models.DateTimeField()
    used_bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["location", "resolution", "start"], name="locationsample_one_per_bucket"),
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="locationsample_time")]

    def __str__(self) -> str:
        return f"location #{self.location_id} at {self.start:%Y-%m-%d %H:%M} ({self.resolution})"


class SafetySample(models.Model):
    """Hourly histogram of raw data's time to safety (registered → archived), in powers-of-two seconds."""

    start = models.DateTimeField(unique=True)
    counts = models.JSONField(default=dict, help_text="{bin: packages}; bin b holds times in [2^b, 2^(b+1)) s.")

    def __str__(self) -> str:
        return f"time to safety at {self.start:%Y-%m-%d %H:00}"


class JobOutcomeTotal(models.Model):
    """Jobs of a kind finished with an outcome, since ops-db started counting (``opsdb_job_finished_total``)."""

    kind = models.CharField(max_length=20)
    outcome = models.CharField(max_length=20)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "outcome"], name="joboutcometotal_one_per_label")]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome}: {self.count}"


class RouteTotal(models.Model):
    """Bytes and transfers a route completed, since ops-db started counting (``opsdb_transfer_bytes_total``)."""

    route = models.OneToOneField("transfers.DataTransferRoute", on_delete=models.CASCADE, related_name="+")
    bytes_done = models.BigIntegerField(default=0)
    transfers_done = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"route #{self.route_id}: {self.bytes_done} bytes"


class HistoryCursor(models.Model):
    """How far the history pass has read the transition log (django-fsm-log's StateLog ids)."""

    name = models.CharField(max_length=50, unique=True)
    last_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(last_id__gte=0), name="historycursor_not_negative")]

    def __str__(self) -> str:
        return f"{self.name} at {self.last_id}"


class OldestUnsafe(models.Model):
    """The oldest raw package not yet safe, as the history pass found it at its last 5-minute sample.

    Finding it reads every open job's packages; the pass does it every 5 minutes so the dashboard
    and /metrics (which compute its age at each request) do not.
    """

    raw_package = models.ForeignKey("opsdb.RawDataPackage", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    registered_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        verbose_name = "oldest unsafe raw package"

    def __str__(self) -> str:
        return f"oldest unsafe: {self.raw_package_id or 'none'} (checked {self.checked_at:%Y-%m-%d %H:%M})"


class LocationUsage(models.Model):
    """The bytes present at a location (raw package, bundle and staged file copies), kept by counting changes.

    Database triggers on the three copy tables (and on their objects' ``size``) append a
    :class:`LocationUsageChange` in the same transaction as every change of what is PRESENT where; the
    history pass adds those changes here each tick. So the samples and /metrics never sum the copy
    tables, which grow with every year of history (``operations.usage``).
    """

    location = models.OneToOneField("opsdb.DataLocation", on_delete=models.CASCADE, related_name="+")
    used_bytes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"location #{self.location_id}: {self.used_bytes} bytes"


class LocationUsageChange(models.Model):
    """Bytes that became PRESENT (positive) or stopped being PRESENT (negative) at a location, not yet counted.

    Written only by the triggers (one row per statement and location), removed by the history pass as it
    adds them to :class:`LocationUsage`. Appending instead of updating a total keeps concurrent workers
    from waiting on (or deadlocking over) one row per location.
    """

    # No database constraint: the triggers append rows while whole tables are being emptied (Django's
    # flush deletes them in no set order), and a row may outlive its location. The fold drops those.
    location = models.ForeignKey("opsdb.DataLocation", on_delete=models.CASCADE, related_name="+", db_index=False,
                                 db_constraint=False)
    bytes = models.BigIntegerField()

    def __str__(self) -> str:
        return f"location #{self.location_id}: {self.bytes:+} bytes"
