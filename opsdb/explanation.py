"""Why a job waits, in plain words: the value every job carries (``code``, ``message``, ``since``).

The codes are declared here, once; the words are made by ``opsdb.explain`` (what every kind
shares) and by each job kind's ``JobKindHandler.explain`` (what only that kind knows: routes,
relays). This module imports nothing above the leased-job machinery, so handlers can use it.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import models
from django.utils import timezone


class ExplanationCode(models.TextChoices):
    """What a job is doing or waiting for; the message says it in words with times and figures."""

    QUEUED = "queued", "Waiting for a worker to claim it"
    RETRY_WAIT = "retry_wait", "Waiting to be retried after a failed attempt"
    ROUTE_PAUSED = "route_paused", "Held: its route is paused"
    ROUTE_AT_LIMIT = "route_at_limit", "Held: its route is at its concurrency limit"
    SOURCE_CORRUPT = "source_corrupt", "Held: the copy it reads was found corrupt"
    NO_WORKER = "no_worker", "No worker serving its site has been seen lately"
    RUNNING = "running", "Being done by a worker"
    RESUMED = "resumed", "Being done by a worker, resumed from an earlier attempt"
    LEASE_EXPIRED = "lease_expired", "Its worker stopped reporting; its lease ran out"
    RELAY_HOP = "relay_hop", "Arrived at a relay, waiting for the next hop"
    BUNDLE_FILLING = "bundle_filling", "A raw package waiting for more data to fill its bundle"
    NEEDS_OPERATOR = "needs_operator", "Needs an operator: its attempts are used up"
    DONE = "done", "Finished"
    CANCELLED = "cancelled", "Cancelled"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a job is where it is: a code, a sentence, and when that situation started (None: unknown)."""

    code: str
    message: str
    since: datetime | None = None

    def as_dict(self) -> dict:
        return {"code": str(self.code), "message": self.message, "since": self.since}


def clock(moment: datetime | None, now: datetime | None = None) -> str:
    """A time as people read it: "14:05" today, "2026-11-26 14:05" another day (server time zone)."""
    if moment is None:
        return "an unknown time"
    local = timezone.localtime(moment)
    if local.date() == timezone.localtime(now or timezone.now()).date():
        return f"{local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def duration(seconds: float) -> str:
    """A rounded length of time: "40 s", "3 min", "2 h 5 min", "3 days"."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def age(since: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``since`` was, as ``duration`` says it; empty when unknown."""
    if since is None:
        return ""
    return duration(((now or timezone.now()) - since).total_seconds())


def human_bytes(size: int | None) -> str:
    """Sizes as operators say them (decimal units)."""
    value = float(size or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def quoted_error(error: str, length: int = 120) -> str:
    """The first line of an error, shortened, in quotes."""
    line = " ".join((error or "").strip().splitlines()[:1]).strip() or "an unknown error"
    return f"“{line if len(line) <= length else line[: length - 1] + '…'}”"


def waiting_since(job, now: datetime | None = None) -> datetime:
    """When a due job became claimable: the end of its backoff, else its last change (creation, retry)."""
    if job.next_attempt_at is not None and job.next_attempt_at <= (now or timezone.now()):
        return job.next_attempt_at
    return job.updated_at or job.created_at
