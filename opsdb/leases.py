"""The leased-job machinery shared by every kind of work a worker does.

A job is claimed by one worker at a time under a lease (token + expiry). The state machine
is the one of DESIGN.md; the services that drive it live in ``opsdb.services``.
"""

import random
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.contenttypes.fields import GenericRelation
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import RETURN_VALUE, ConcurrentTransitionMixin, FSMField, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description

from opsdb.choices import DONE_STATUSES, JobStatus

ERROR_MAX_LENGTH = 2000


def backoff_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff after ``attempts`` failed attempts, with jitter, never above the cap."""
    base = settings.JOB_BACKOFF_BASE_SECONDS
    cap = settings.JOB_BACKOFF_MAX_SECONDS
    raw = min(cap, base * 2 ** max(attempts - 1, 0))
    jitter = settings.JOB_BACKOFF_JITTER
    factor = 1 + (rng or random).uniform(-jitter, jitter)
    return timedelta(seconds=min(cap, max(0.0, raw * factor)))


class LeasedJobQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=JobStatus.PENDING)

    def due(self, now: datetime | None = None):
        """Pending jobs whose backoff has run out."""
        now = now or timezone.now()
        return self.pending().filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))

    def active(self):
        return self.filter(status=JobStatus.ACTIVE)

    def lease_expired(self, now: datetime | None = None):
        return self.active().filter(lease_expires_at__lt=now or timezone.now())

    def failed(self):
        return self.filter(status=JobStatus.FAILED)

    def done(self):
        return self.filter(status__in=DONE_STATUSES)

    def open(self):
        """Not finished: pending, active or failed (waiting for an operator)."""
        return self.filter(status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED))

    def partial_data_expired(self, cutoff: datetime):
        """Waiting with partial data of an attempt that ended before ``cutoff`` (see ``partial_data_cutoff``)."""
        return self.pending().filter(resume_bytes__isnull=False, heartbeat_at__lt=cutoff)


def partial_data_index(prefix: str) -> models.Index:
    """The waiting jobs that hold partial data: the "partial data" pass reads only these, not every waiting job."""
    return models.Index(fields=["heartbeat_at"], condition=Q(status=JobStatus.PENDING, resume_bytes__isnull=False),
                        name=f"{prefix}_partial_data")


def claim_order_index(prefix: str, *, pk: str = "id") -> models.Index:
    """The waiting jobs in claim order (``opsdb.services.CLAIM_ORDER``): a claim reads the first ones.

    Without it every claim read and sorted every waiting job of its kind (PostgreSQL: 31 ms at
    19,000 waiting archive jobs), and claimers paid it on every claim while a backlog lasted.
    """
    return models.Index(fields=["-priority", "created_at", pk], condition=Q(status=JobStatus.PENDING),
                        name=f"{prefix}_claim_order")


def open_job_indexes(prefix: str, location: str | None, *, pk: str = "id") -> list[models.Index]:
    """Covering indexes of the waiting and of the running jobs (``location``: the job's location field),
    and the waiting jobs in claim order (``claim_order_index``).

    The operations view sums them up per site and per worker at every page view and scrape; with
    these it reads the index alone (an index-only scan), not rows scattered through years of history.
    """
    return [
        claim_order_index(prefix, pk=pk),
        models.Index(fields=["status", *([location] if location else []), "created_at", "next_attempt_at",
                             "claimed_at", pk],
                     condition=Q(status=JobStatus.PENDING), name=f"{prefix}_pending_cover"),
        models.Index(fields=["status", "lease_user", "lease_holder", "heartbeat_at", "lease_expires_at", pk],
                     condition=Q(status=JobStatus.ACTIVE), name=f"{prefix}_active_cover"),
    ]


class LeasedJob(ConcurrentTransitionMixin, models.Model):
    """A unit of work that one worker at a time holds under a lease.

    Transitions touch only this row; the services in ``opsdb.services`` lock, validate the
    lease, write logs and create follow-up work around them.
    """

    KIND: ClassVar[str]
    DONE: ClassVar[str]

    status = FSMField(default=JobStatus.PENDING, choices=JobStatus.choices, protected=True, db_index=True)
    priority = models.IntegerField(default=0, help_text="Higher is claimed first.")
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts since it was created or last retried.")
    attempts_total = models.PositiveIntegerField(
        "attempts in all", default=0, help_text="Failed attempts in all, across operators' retries."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Not claimable before this time.")
    lease_token = models.CharField(max_length=64, blank=True, default="", editable=False)
    lease_holder = models.CharField(max_length=200, blank=True, default="", help_text="Worker name.")
    lease_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claim_request_id = models.CharField(
        max_length=64, blank=True, default="", editable=False,
        help_text="The worker's id of the claim request that took the lease: a repeat of it gets this job again.",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    bytes_done = models.BigIntegerField(null=True, blank=True)
    resume_bytes = models.BigIntegerField(
        null=True, blank=True,
        help_text="Bytes the last unfinished attempt had moved (its last heartbeat): what the next attempt may "
                  "resume from, as a worker finds it on disk.",
    )
    resumed_from = models.BigIntegerField(
        null=True, blank=True,
        help_text="Bytes the current (or last) attempt kept from an earlier one instead of moving them again.",
    )
    last_error = models.TextField(blank=True, default="")
    log_path = models.CharField(max_length=1024, blank=True, default="", help_text="Detailed log of the last attempt.")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    logs = GenericRelation("opsdb.DataTransferLog")

    objects = LeasedJobQuerySet.as_manager()

    class Meta:
        abstract = True

    @classmethod
    def max_attempts(cls) -> int:
        return settings.JOB_MAX_ATTEMPTS

    @property
    def state_fields(self):
        """The FSM fields (``status``), as ``ConcurrentTransitionMixin`` finds them, found once per model.

        The mixin filters every field of the model each time an instance is made or saved; a claim
        and a batch report make hundreds of job instances.
        """
        model = type(self)
        found = model.__dict__.get("_opsdb_state_fields")
        if found is None:
            found = tuple(super().state_fields)
            model._opsdb_state_fields = found
        return found

    def clean_fields(self, exclude=None):
        # Model validation re-assigns every field; the protected status only changes by transition.
        super().clean_fields(exclude={*(exclude or ()), "status"})

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES

    def lease_is_held(self, token: str, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return (
            self.status == JobStatus.ACTIVE
            and bool(token)
            and self.lease_token == token
            and self.lease_expires_at is not None
            and self.lease_expires_at >= now
        )

    # Hooks for kinds with extra bookkeeping (archive transfers' intervention flag).
    def _on_attempts_exhausted(self) -> None:
        """Called when a failed attempt leaves the job FAILED."""

    def _on_retry(self) -> None:
        """Called when an operator sends a FAILED job back to PENDING."""

    def _record_failure(self, error: str, now: datetime) -> str:
        self.attempts += 1
        self.attempts_total += 1
        self.last_error = (error or "")[:ERROR_MAX_LENGTH]
        self.lease_expires_at = None
        if self.bytes_done:
            self.resume_bytes = self.bytes_done  # else an earlier attempt's data is still what there is
        if self.attempts >= self.max_attempts():
            self.finished_at = now
            self.next_attempt_at = None
            self.resume_bytes = None  # failed for good: the worker removes the partial data
            self._on_attempts_exhausted()
            return JobStatus.FAILED
        self.next_attempt_at = now + backoff_delay(self.attempts)
        return JobStatus.PENDING

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=JobStatus.PENDING, target=JobStatus.ACTIVE)
    def claim(self, *, worker: str, token: str, expires_at: datetime, user=None, request_id: str = "", by=None,
              description=None):
        """PENDING → ACTIVE: a worker takes the job under a new lease."""
        now = timezone.now()
        self.claim_request_id = request_id
        self.lease_holder = worker
        self.lease_token = token
        self.lease_user = user
        self.lease_expires_at = expires_at
        self.claimed_at = now
        self.heartbeat_at = now
        self.bytes_done = None
        self.resumed_from = None

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=JobStatus.ACTIVE, target=RETURN_VALUE(*DONE_STATUSES))
    def complete(self, *, log_path: str = "", by=None, description=None):
        """ACTIVE → done (COMPLETED/TRANSFERRED/UNPACKED/READY): the worker reported success."""
        self.finished_at = timezone.now()
        self.lease_expires_at = None
        self.last_error = ""
        self.next_attempt_at = None
        self.resume_bytes = None
        if log_path:
            self.log_path = log_path
        return self.DONE

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=JobStatus.ACTIVE, target=RETURN_VALUE(JobStatus.PENDING, JobStatus.FAILED))
    def fail(self, *, error: str, log_path: str = "", retryable: bool = True, by=None, description=None):
        """ACTIVE → PENDING (with backoff) or FAILED (attempts spent, or not retryable): a failed attempt."""
        if log_path:
            self.log_path = log_path
        now = timezone.now()
        if not retryable:
            self.attempts = max(self.attempts, self.max_attempts() - 1)
        return self._record_failure(error, now)

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=JobStatus.ACTIVE, target=RETURN_VALUE(JobStatus.PENDING, JobStatus.FAILED))
    def expire(self, *, by=None, description=None):
        """ACTIVE → PENDING or FAILED: the lease ran out without a report; counts as a failed attempt."""
        return self.record_expiry(timezone.now())

    def record_expiry(self, now: datetime) -> str:
        """What a lease running out does to the job; the target status (PENDING or FAILED).

        Shared by the ``expire`` transition and the set-based pass (``opsdb.recovery``).
        """
        target = self._record_failure(f"lease held by {self.lease_holder or 'worker'} expired without a report", now)
        self.lease_token = ""  # a late report from the old holder must be refused
        return target

    def expiry_description(self) -> str:
        """The state log's description of an expiry (and the start of the job log's line)."""
        return f"lease of {self.lease_holder or 'worker'} expired"

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=JobStatus.FAILED, target=JobStatus.PENDING)
    def retry(self, *, by=None, description=None):
        """FAILED → PENDING: an operator gives the job a fresh set of attempts (``attempts_total`` keeps counting)."""
        self.attempts = 0
        self.next_attempt_at = None
        self.finished_at = None
        self._on_retry()

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[JobStatus.PENDING, JobStatus.FAILED], target=JobStatus.CANCELLED)
    def cancel(self, *, by=None, description=None):
        """PENDING/FAILED → CANCELLED: nobody will do this job."""
        self.finished_at = timezone.now()
        self.next_attempt_at = None
        self.resume_bytes = None

    def partial_data_verdict(self, now: datetime | None = None) -> tuple[bool, str]:
        """Whether a worker should keep this job's partial data on disk, and why (work/partials/)."""
        if self.status == JobStatus.ACTIVE:
            return True, "an attempt is running"
        if self.status == JobStatus.PENDING:
            if self.partial_data_expired(now):
                return False, f"kept longer than PARTIAL_MAX_AGE_SECONDS ({settings.PARTIAL_MAX_AGE_SECONDS} s)"
            return True, "the next attempt resumes it"
        if self.status == JobStatus.FAILED:
            return False, "failed for good: a retry by an operator starts from zero"
        return False, f"the job is {self.status.lower()}"

    def partial_data_expired(self, now: datetime | None = None) -> bool:
        """Waiting, and its last attempt ended longer ago than ``PARTIAL_MAX_AGE_SECONDS``."""
        last = self.heartbeat_at or self.updated_at
        return last is not None and last < partial_data_cutoff(now)


def partial_data_cutoff(now: datetime | None = None) -> datetime:
    """Partial data of attempts that ended before this time is not kept (the scheduler's housekeeping)."""
    return (now or timezone.now()) - timedelta(seconds=settings.PARTIAL_MAX_AGE_SECONDS)
