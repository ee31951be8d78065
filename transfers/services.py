"""Transfer services: route health, and splitting a bundle that failed for its content.

Route health: routes pause themselves on repeated retryable failures and probe their way back.

Rules (settings in README.md, ``ROUTE_*``):
- A retryable transfer failure counts against its route; a success resets the count. Non-retryable
  failures (checksum mismatch, permission, missing source) and lost leases say nothing about the
  link and are not counted.
- An ACTIVE route pauses itself (PAUSED_AUTO) after ``ROUTE_PAUSE_AFTER_FAILURES`` consecutive
  retryable failures, or when its success rate over the last ``ROUTE_SUCCESS_WINDOW_SECONDS``
  (attempts since it last became ACTIVE) falls under ``ROUTE_SUCCESS_RATE_MIN`` with at least
  ``ROUTE_SUCCESS_MIN_ATTEMPTS`` attempts.
- A paused route's transfers stay PENDING and are not claimed (the transfer kind's claim filter).
  After the cool-down (``ROUTE_COOLDOWN_SECONDS``) one transfer is released as a probe: its
  success resumes the route, its retryable failure restarts the cool-down. A probe that stops
  being ACTIVE otherwise (lost lease, non-retryable failure) frees the slot for another probe.
- Operators pause (PAUSED_MANUAL) and resume routes by hand, with a reason; a manually paused
  route releases no probe.

Every change of state is a transition recorded in the state log (who, when, from, to, why),
shown on the route's admin page, and written as a log line (the ``opsdb.routes`` logger and a
DataTransferLog line attached to the route). Each service locks the route row, so failures
reported at once on PostgreSQL are counted one after another and pause the route once.
"""

import logging
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from opsdb.choices import JobStatus, LogLevel
from opsdb.models import REASON_MAX_LENGTH, DataTransferLog
from opsdb.planning import PassResult, plural
from transfers.choices import RouteState
from transfers.models import (
    AUTOMATIC,
    HEALTH_FIELDS,
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageMember,
    DataTransferRoute,
    RouteAttempt,
)

log = logging.getLogger("opsdb.routes")



def _lock(route_id: int) -> DataTransferRoute:
    return DataTransferRoute.objects.select_for_update().get(pk=route_id)


def _who(user) -> str:
    return getattr(user, "username", "") or str(user or "") or "an operator"


def route_log(*, route: DataTransferRoute, message: str, level: str = LogLevel.INFO, worker: str = "") -> None:
    """A log line about the route: to the ``opsdb.routes`` logger and as a DataTransferLog line on the route."""
    text = f"route {route}: {message}"
    log.log(logging.WARNING if level in (LogLevel.WARNING, LogLevel.ERROR) else logging.INFO, text)
    DataTransferLog.objects.create(
        content_type=ContentType.objects.get_for_model(DataTransferRoute), object_id=route.pk, level=level,
        message=text[: DataTransferLog._meta.get_field("message").max_length], worker=worker,
    )


def _save_health(route: DataTransferRoute) -> None:
    """Write the health fields with an UPDATE, not save(): the route's edit history (simple-history)
    records operators' edits, not every counted failure; state changes are in the state log."""
    DataTransferRoute.objects.filter(pk=route.pk).update(
        **{field: getattr(route, field) for field in HEALTH_FIELDS if field != "probe_transfer"},
        probe_transfer_id=route.probe_transfer_id,
    )


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why (it is shown to other operators and in the route's history)."})
    return reason[:REASON_MAX_LENGTH]


@transaction.atomic
def route_pause(*, route: DataTransferRoute, reason: str, by=None, now: datetime | None = None) -> DataTransferRoute:
    """ACTIVE/PAUSED_AUTO → PAUSED_MANUAL: an operator holds the route's transfers (TransitionNotAllowed if paused)."""
    reason = _clean_reason(reason)
    route = _lock(route.pk)
    who = _who(by)
    route.pause(reason=reason, by_name=who, now=now or timezone.now(), by=by, description=f"{who}: {reason}")
    _save_health(route)
    route_log(route=route, level=LogLevel.WARNING, message=f"paused by {who}: {reason}")
    return route


@transaction.atomic
def route_resume(*, route: DataTransferRoute, reason: str, by=None, now: datetime | None = None) -> DataTransferRoute:
    """PAUSED_* → ACTIVE by an operator: its held transfers may be claimed again (TransitionNotAllowed if active)."""
    reason = _clean_reason(reason)
    route = _lock(route.pk)
    who = _who(by)
    route.resume(reason=reason, by_name=who, now=now or timezone.now(), by=by, description=f"{who}: {reason}")
    _save_health(route)
    route_log(route=route, message=f"resumed by {who}: {reason}")
    return route


def route_transfer_failed(*, transfer: DataTransfer, error: str, now: datetime | None = None) -> None:
    """Count a retryable failure of ``transfer`` against its route; pause it or restart its cool-down.

    Runs in the transaction that records the failed attempt.
    """
    if transfer.route_id is None:
        return
    now = now or timezone.now()
    route = _lock(transfer.route_id)
    RouteAttempt.objects.create(route=route, succeeded=False, created_at=now)
    route.consecutive_failures += 1
    short = (error or "no message").strip().splitlines()[0][:200] if (error or "").strip() else "no message"
    if route.state == RouteState.PAUSED_AUTO and route.probe_transfer_id == transfer.pk:
        route.probe_failed(now=now, description=f"probe transfer #{transfer.pk} failed: {short}")
        until = timezone.localtime(route.cooldown_until).strftime("%H:%M:%S")
        route_log(route=route, level=LogLevel.WARNING,
                  message=f"probe transfer #{transfer.pk} failed ({short}); cool-down until {until}")
    elif route.state == RouteState.ACTIVE and (why := _pause_reason(route, now)):
        reason = f"{why}; last error: {short}"
        route.pause_auto(reason=reason, now=now, description=reason)
        route_log(route=route, level=LogLevel.WARNING, message=f"paused automatically: {reason}")
    _save_health(route)


def _pause_reason(route: DataTransferRoute, now: datetime) -> str:
    """Why an ACTIVE route must pause after one more retryable failure, or '' when it need not."""
    limit = settings.ROUTE_PAUSE_AFTER_FAILURES
    if route.consecutive_failures >= limit:
        return f"{route.consecutive_failures} consecutive retryable transfer failures (limit {limit})"
    window = timedelta(seconds=settings.ROUTE_SUCCESS_WINDOW_SECONDS)
    start = max(now - window, route.state_since) if route.state_since else now - window
    counts = RouteAttempt.objects.filter(route=route, created_at__gte=start).aggregate(
        total=Count("pk"), ok=Count("pk", filter=Q(succeeded=True))
    )
    total, ok = counts["total"], counts["ok"]
    if total >= settings.ROUTE_SUCCESS_MIN_ATTEMPTS and ok < settings.ROUTE_SUCCESS_RATE_MIN * total:
        minutes = round(window.total_seconds() / 60)
        return (f"success rate {ok / total:.0%} ({ok} of {plural(total, 'attempt')}) over the last {minutes} min, "
                f"under {settings.ROUTE_SUCCESS_RATE_MIN:.0%}")
    return ""


def route_transfer_succeeded(*, transfer: DataTransfer, now: datetime | None = None) -> None:
    """Record a transfer's success on its route; the probe's success resumes a route that paused itself."""
    if transfer.route_id is None:
        return
    now = now or timezone.now()
    route = _lock(transfer.route_id)
    RouteAttempt.objects.create(route=route, succeeded=True, created_at=now)
    if route.state == RouteState.PAUSED_AUTO and route.probe_transfer_id == transfer.pk:
        reason = f"probe transfer #{transfer.pk} succeeded"
        route.resume(reason=reason, by_name=AUTOMATIC, now=now, description=reason)
        route_log(route=route, message=f"resumed automatically: {reason}")
        _save_health(route)
    elif route.consecutive_failures:
        route.consecutive_failures = 0
        _save_health(route)


def probe_open_filter(now: datetime, prefix: str = "") -> Q:
    """Routes (``prefix`` e.g. ``route__``) that paused themselves, whose cool-down is over and no probe is out."""
    return Q(**{f"{prefix}state": RouteState.PAUSED_AUTO, f"{prefix}cooldown_until__lte": now}) & (
        Q(**{f"{prefix}probe_transfer__isnull": True})
        | ~Q(**{f"{prefix}probe_transfer__status": JobStatus.ACTIVE})
    )


def route_admits(*, route: DataTransferRoute, transfer: DataTransfer, now: datetime | None = None) -> bool:
    """May ``transfer`` be claimed on ``route`` (locked by the caller)? Releases the probe of a paused route.

    Called inside the claim transaction with the route row locked, so only one claimer releases
    the probe; if the claim then fails, the probe assignment rolls back with it.
    """
    if route.state == RouteState.ACTIVE:
        return True
    if route.state != RouteState.PAUSED_AUTO:
        return False
    now = now or timezone.now()
    if route.cooldown_until is not None and route.cooldown_until > now:
        return False
    probe_out = route.probe_transfer_id is not None and DataTransfer.objects.filter(
        pk=route.probe_transfer_id, status=JobStatus.ACTIVE
    ).exists()
    if probe_out:
        return False
    route.probe_transfer_id = transfer.pk
    DataTransferRoute.objects.filter(pk=route.pk).update(probe_transfer_id=transfer.pk)
    route_log(route=route, message=f"cool-down over: transfer #{transfer.pk} released as a probe")
    return True


# The route states this scheduler process last reported: {route id: (state, since, cool-down end)}.
_reported: dict[int, tuple[str, datetime | None, datetime | None]] = {}


def route_health_pass(*, now: datetime) -> PassResult:
    """Scheduler pass: say which routes changed state since the last tick; forget old attempt outcomes.

    The state changes themselves happen when transfers are reported and claimed (and by hand);
    this pass only puts them in the scheduler's output (an operator watching it sees a route pause
    and resume) and deletes outcomes older than the success-rate window (one DELETE).
    """
    result = PassResult("route health")
    cutoff = now - timedelta(seconds=settings.ROUTE_SUCCESS_WINDOW_SECONDS)
    deleted, _ = RouteAttempt.objects.filter(created_at__lt=cutoff).delete()
    _say_state_changes(result)
    result.count = deleted
    return result


def _say_state_changes(result: PassResult) -> None:
    routes = DataTransferRoute.objects.select_related(
        "origin_site", "destination_site", "relay_site", "origin_location__site", "destination_location__site"
    )
    for route in routes:
        current = (route.state, route.state_since, route.cooldown_until)  # a failed probe moves the cool-down
        last = _reported.get(route.pk)
        _reported[route.pk] = current
        if current == last or (last is None and route.state == RouteState.ACTIVE):
            continue
        if route.state == RouteState.PAUSED_AUTO and route.cooldown_until:
            until = f"; next probe after {timezone.localtime(route.cooldown_until):%H:%M:%S}"
        else:
            until = ""
        result.say(f"route {route} is {route.get_state_display().lower()} ({route.state_by}: "
                   f"{route.state_reason}){until}")


# --- bundles ---------------------------------------------------------------------------------------


@transaction.atomic
def transfer_package_split(*, transfer_package: DataTransferPackage,
                           reason: str = "") -> tuple[DataTransferPackage, DataTransferPackage] | None:
    """A FAILED bundle of several raw packages → two new PENDING bundles of half its members; it is CANCELLED.

    A raw package is bundled once, so a bundle that failed for good because of one bad member
    would hold its good members for ever. Halving it on each such failure isolates the bad member
    in log2(n) rounds (a bundle of one stays FAILED for an operator) while the others go on.
    ``transfer_package`` must be locked by the caller's transaction (the fail report's); None when
    it is not FAILED or has a single member.
    """
    members = list(transfer_package.members.select_related("raw_package").order_by("raw_package__name"))
    if transfer_package.status != JobStatus.FAILED or len(members) < 2:
        return None
    half = len(members) // 2
    halves = tuple(_bundle_of(transfer_package, part, suffix)
                   for part, suffix in ((members[:half], "a"), (members[half:], "b")))
    names = " and ".join(h.name for h in halves)
    transfer_package.cancel(description=f"split into {names}: {reason}"[:REASON_MAX_LENGTH])
    transfer_package.save()
    from opsdb.services import write_job_log

    write_job_log(job=transfer_package, message=f"split into {names} after a failure in its content: {reason}",
                  worker=transfer_package.lease_holder)
    return halves


def _bundle_of(parent: DataTransferPackage, members: list[DataTransferPackageMember],
               suffix: str) -> DataTransferPackage:
    """A new bundle like ``parent`` (origin, target, priority) holding ``members``, moved out of it."""
    name = f"{parent.name.removesuffix('.tar')}-{suffix}.tar"
    bundle = DataTransferPackage.objects.create(
        name=name, origin_location_id=parent.origin_location_id, priority=parent.priority,
        archive_path=str(PurePosixPath(parent.archive_path).with_name(name)),
        payload_size=sum(m.raw_package.size for m in members), target_size=parent.target_size,
        checksum_algorithm=parent.checksum_algorithm,
    )
    DataTransferPackageMember.objects.filter(pk__in=[m.pk for m in members]).update(transfer_package=bundle)
    return bundle
