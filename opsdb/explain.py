"""Why is it waiting: an explanation for every leased job, computed from the state, in bulk.

``explain_jobs(jobs)`` answers for a list of jobs of any kinds with a fixed number of queries
whatever its length (none for jobs whose own row says it all: done, cancelled, failed, running,
in backoff): per kind one read of the jobs' sites and sizes, then the kind's own hook
(``JobKindHandler.explain``: routes, relays), and one read of the workers that serve the sites
of the jobs that wait for one (two queries). Lists (admin, API, pages) call ``attach_explanations`` once for
the page they show; each job then carries ``job.explanation``.

Where a job waits, and for what:
- done, cancelled, failed (needs an operator after n attempts, with the last error);
- active: being done by a worker (resumed at x of y when it kept an earlier attempt's data), or
  its lease ran out without a report (the scheduler's next pass counts a failed attempt);
- pending: in backoff (retry n of m at t, after "error" at t), held by its kind (a paused route,
  a route at its limit), or due: waiting for a worker at its site — or, when no worker serving
  that site has been seen for ``WORKER_SILENT_SECONDS``, saying so with when each was last seen.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string

from opsdb.choices import DONE_STATUSES, JobStatus
from opsdb.explanation import (
    Explanation,
    ExplanationCode,
    age,
    clock,
    human_bytes,
    quoted_error,
    waiting_since,
)
from opsdb.leases import LeasedJob
from opsdb.models import RawDataPackage, WorkerProfile
from opsdb.registry import job_kinds

SEEN_SHOWN = 3  # workers named in a "no worker" message


@dataclass
class SiteWorkers:
    """The workers that may claim jobs at a site (restricted to it, or to no site) and when each was last seen."""

    site_name: str
    seen: list[tuple[str, datetime | None]] = field(default_factory=list)

    @property
    def last_seen(self) -> datetime | None:
        return max((when for _, when in self.seen if when is not None), default=None)

    def silent(self, now: datetime) -> bool:
        """No worker serves the site, or none was seen within ``WORKER_SILENT_SECONDS``."""
        last = self.last_seen
        return last is None or now - last > timedelta(seconds=settings.WORKER_SILENT_SECONDS)

    def seen_words(self, now: datetime) -> str:
        """ "cologne-dtn-1 last seen 13:02, cologne-dtn-2 never" (most recent first)."""
        ranked = sorted(self.seen, key=lambda s: (s[1] is None, -(s[1].timestamp() if s[1] else 0), s[0]))
        words = [f"{name} last seen {clock(when, now)}" if when else f"{name} never seen" for name, when in ranked]
        more = len(words) - SEEN_SHOWN
        return ", ".join(words[:SEEN_SHOWN]) + (f" and {more} more" if more > 0 else "")


def site_workers(sites: dict[int, str]) -> dict[int, SiteWorkers]:
    """Each site's (id → name) serving workers and when their tokens were last used, in one query."""
    if not sites:
        return {}
    found = {pk: SiteWorkers(name) for pk, name in sites.items()}
    rows = (
        WorkerProfile.objects.filter(user__is_active=True)
        .values("pk", "user__username", "sites")  # one row per (worker, site); no site: every site
        .annotate(last_seen=Max("user__api_tokens__last_used_at"))
        .values_list("pk", "user__username", "sites", "last_seen")
        .order_by()
    )
    workers: dict[int, tuple[str, datetime | None, set[int | None]]] = {}
    for profile_id, name, site_id, last_seen in rows:
        workers.setdefault(profile_id, (name, last_seen, set()))[2].add(site_id)
    for name, last_seen, allowed in workers.values():
        for site_id, site in found.items():
            if None in allowed or site_id in allowed:
                site.seen.append((name, last_seen))
    return found


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What the generic explanations read beyond the job's own row: its site and size."""

    site_id: int | None
    site_name: str
    size: int | None


def job_facts(model: type[LeasedJob], pks: Sequence[int]) -> dict[int, JobFacts]:
    """Site and size of jobs of one kind, from the kind's declared fields (one query)."""
    if not pks:
        return {}
    handler = job_kinds.for_model(model)
    size_field = handler.size_field or "pk"
    rows = model.objects.filter(pk__in=pks).values_list(
        "pk", f"{handler.site_field}_id", f"{handler.site_field}__name", size_field
    )
    return {pk: JobFacts(site_id, name, size if handler.size_field else None) for pk, site_id, name, size in rows}


def _finished(job: LeasedJob, now: datetime) -> Explanation | None:
    if job.status in DONE_STATUSES:
        return Explanation(ExplanationCode.DONE, f"Finished at {clock(job.finished_at, now)}.", job.finished_at)
    if job.status == JobStatus.CANCELLED:
        return Explanation(ExplanationCode.CANCELLED, f"Cancelled at {clock(job.finished_at, now)}.", job.finished_at)
    if job.status == JobStatus.FAILED:
        attempts = f"{job.attempts} failed attempt{'s' if job.attempts != 1 else ''}"
        return Explanation(
            ExplanationCode.NEEDS_OPERATOR,
            f"Needs an operator after {attempts}: the last, at {clock(job.finished_at, now)}, failed with "
            f"{quoted_error(job.last_error)}. Retry it once the cause is fixed, or cancel it.",
            job.finished_at,
        )
    return None


def _active(job: LeasedJob, facts: JobFacts | None, now: datetime) -> Explanation:
    holder = job.lease_holder or "a worker"
    if job.lease_expires_at is not None and job.lease_expires_at < now:
        return Explanation(
            ExplanationCode.LEASE_EXPIRED,
            f"{holder} stopped reporting: its lease ran out at {clock(job.lease_expires_at, now)} (last heard from "
            f"at {clock(job.heartbeat_at or job.claimed_at, now)}). The scheduler's next pass counts a failed "
            f"attempt and puts the job back in the queue.",
            job.lease_expires_at,
        )
    done = f"; {human_bytes(job.bytes_done)} done" if job.bytes_done else ""
    if job.resumed_from:
        size = facts.size if facts else None
        of = f" of {human_bytes(size)}" if size else ""
        return Explanation(
            ExplanationCode.RESUMED,
            f"Being moved by {holder} since {clock(job.claimed_at, now)}, resumed at {human_bytes(job.resumed_from)}"
            f"{of} kept from an earlier attempt{done}.",
            job.claimed_at,
        )
    heartbeat = f"; last heartbeat {clock(job.heartbeat_at, now)}" if job.heartbeat_at else ""
    return Explanation(ExplanationCode.RUNNING,
                       f"Being done by {holder} since {clock(job.claimed_at, now)}{heartbeat}{done}.", job.claimed_at)


def _backoff(job: LeasedJob, now: datetime) -> Explanation | None:
    if job.next_attempt_at is None or job.next_attempt_at <= now:
        return None
    if not job.attempts:
        return Explanation(ExplanationCode.RETRY_WAIT, f"Not to be started before {clock(job.next_attempt_at, now)}.",
                           job.updated_at)
    return Explanation(
        ExplanationCode.RETRY_WAIT,
        f"Retry {job.attempts + 1} of {job.max_attempts()} at {clock(job.next_attempt_at, now)}, after "
        f"{quoted_error(job.last_error)} at {clock(job.updated_at, now)}.",
        job.updated_at,
    )


def _queued(job: LeasedJob, workers: SiteWorkers | None, now: datetime) -> Explanation:
    since = waiting_since(job, now)
    resume = f" The next attempt resumes at {human_bytes(job.resume_bytes)}." if job.resume_bytes else ""
    if workers is None:
        return Explanation(ExplanationCode.QUEUED, f"Waiting for a worker to claim it.{resume}", since)
    if not workers.seen:
        return Explanation(
            ExplanationCode.NO_WORKER,
            f"No worker serves {workers.site_name}: no worker account may claim jobs there "
            f"(an operator adds one with manage.py create_worker).{resume}",
            since,
        )
    if workers.silent(now):
        last = workers.last_seen
        silent_for = f" for {age(last, now)}" if last else " yet"
        return Explanation(
            ExplanationCode.NO_WORKER,
            f"No worker serving {workers.site_name} has been seen{silent_for} ({workers.seen_words(now)}).{resume}",
            max(last, since) if last else since,  # the job waits, and nobody is there to take it
        )
    return Explanation(
        ExplanationCode.QUEUED,
        f"Waiting for a worker at {workers.site_name} to claim it ({workers.seen_words(now)}).{resume}", since,
    )


def explain_jobs(jobs: Sequence[LeasedJob], *, now: datetime | None = None) -> list[Explanation]:
    """The explanation of each job, in the order given (jobs of any kinds; a fixed number of queries)."""
    now = now or timezone.now()
    found: dict[int, Explanation] = {}  # by position in ``jobs``
    by_model: dict[type, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        by_model[type(job)].append(i)
    due: list[tuple[int, JobFacts | None]] = []  # (position, site) of due jobs that wait for a worker
    for model, positions in by_model.items():
        handler = job_kinds.for_model(model)
        kind_jobs = [jobs[i] for i in positions]
        own = handler.explain(kind_jobs, now)
        facts = job_facts(model, [j.pk for j in kind_jobs if j.pk not in own and _needs_facts(j, now)])
        for i, job in zip(positions, kind_jobs, strict=True):
            if job.pk in own:
                found[i] = own[job.pk]
            elif (finished := _finished(job, now)) is not None:
                found[i] = finished
            elif job.status == JobStatus.ACTIVE:
                found[i] = _active(job, facts.get(job.pk), now)
            elif (waiting := _backoff(job, now)) is not None:
                found[i] = waiting
            else:
                due.append((i, facts.get(job.pk)))
    workers = site_workers({f.site_id: f.site_name for _, f in due if f is not None and f.site_id is not None})
    for i, where in due:
        found[i] = _queued(jobs[i], workers.get(where.site_id) if where else None, now)
    return [found[i] for i in range(len(jobs))]


def _needs_facts(job: LeasedJob, now: datetime) -> bool:
    if job.status == JobStatus.ACTIVE:
        return bool(job.resumed_from)
    return job.status == JobStatus.PENDING and (job.next_attempt_at is None or job.next_attempt_at <= now)


def attach_explanations(jobs: Iterable[LeasedJob], *, now: datetime | None = None) -> list[LeasedJob]:
    """Set ``job.explanation`` on each job (for lists: call once for the page shown); returns the jobs."""
    jobs = list(jobs)
    for job, explanation in zip(jobs, explain_jobs(jobs, now=now), strict=True):
        job.explanation = explanation
    return jobs


def explanation_of(job: LeasedJob, *, now: datetime | None = None) -> Explanation:
    """The job's explanation: the one a list attached, else computed for this job alone."""
    attached = getattr(job, "explanation", None)
    if isinstance(attached, Explanation):
        return attached
    return explain_jobs([job], now=now)[0]


def explain_raw_packages(raw_packages: Sequence[RawDataPackage], *, now: datetime | None = None
                         ) -> dict[int, Explanation]:
    """Why raw packages in no bundle yet wait (``settings.RAW_PACKAGE_EXPLAINER``), by id; a fixed number of queries.

    Packages already in a bundle cost nothing and get no entry: their transfers explain themselves.
    """
    if all(package.bundled for package in raw_packages):
        return {}
    return import_string(settings.RAW_PACKAGE_EXPLAINER)(raw_packages, now or timezone.now())


def attach_raw_package_explanations(raw_packages: Iterable[RawDataPackage], *, now: datetime | None = None
                                    ) -> list[RawDataPackage]:
    """Set ``package.explanation`` (an Explanation, or None when it waits for no bundle) on each package."""
    raw_packages = list(raw_packages)
    found = explain_raw_packages(raw_packages, now=now)
    for package in raw_packages:
        package.explanation = found.get(package.pk)
    return raw_packages
