"""The claim loop: threads that claim jobs, run them under a heartbeat, and report the outcome.

Shutdown (SIGTERM/SIGINT/SIGHUP): stop claiming at once; let running jobs finish within the grace
period, then abort them and report ``fail`` with retryable=true, so no job stays claimed for ever.

Partial files: a job's resumable partial file stays for its next attempt only while that attempt
can come; housekeeping (at start and every ``housekeeping_interval``) removes the worker's other
leftovers and asks ops-db which kept partial files still have a job to resume them.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker import storage
from worker.client import ApiClient, ApiError, ApiUnavailable, LeaseLost
from worker.jobs import HANDLERS, Job, JobAborted, JobContext, SourceCorrupt, is_retryable, remove_checkpoints
from worker.storage import PartialJournal

ERROR_REPORT_LENGTH = 1000
# After a failed attempt, the statuses in which another attempt will come to resume the partial files.
STILL_OPEN = ("PENDING", "ACTIVE")


@dataclass
class WorkerConfig:
    api_url: str
    token: str
    name: str
    sites: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    concurrency: int = 1
    lease_seconds: int = 600
    log_dir: Path = Path("var/worker-logs")
    poll_interval: float = 10.0
    once: bool = False
    grace_seconds: float = 30.0
    commands: dict[str, str] = field(default_factory=dict)
    checksum_command: str = ""
    state_dir: Path = Path("var/worker-state")
    housekeeping_interval: float = 600.0
    batch: int = 1  # >1: claim up to this many jobs at once, run them in turn, report them in one request


@dataclass
class Outcome:
    """What happened to one claimed job (for the job line and for tests)."""

    kind: str
    job_id: int
    status: str  # completed / failed / lease-lost / unreported
    detail: str = ""
    log_path: str = ""
    seconds: float = 0.0
    job_status: str = ""  # the job's status in ops-db's answer to the report, when there was one


@dataclass
class Deferred:
    """A report held back to go with the others of its batch (``outcome``: complete or fail)."""

    ctx: JobContext
    kind: str
    job_id: int
    token: str
    log_path: str
    outcome: str
    body: dict[str, Any]
    detail: str  # the outcome's detail once ops-db took the report


class Runner:
    """Runs ``concurrency`` claim loops until stopped (or, with ``once``, one job per loop)."""

    def __init__(self, config: WorkerConfig, client: ApiClient | None = None, *,
                 echo: Callable[[str], None] = print):
        self.config = config
        self.client = client or ApiClient(config.api_url, config.token)
        self.stopping = threading.Event()
        self.outcomes: list[Outcome] = []
        self._echo = echo
        self._running: dict[int, JobContext] = {}
        self._lock = threading.Lock()
        self._abort_timer: threading.Timer | None = None
        self._abort_reason = ""  # set once running jobs must stop; jobs claimed later stop at once
        self.journal = PartialJournal(config.state_dir / "partials")

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        """Start the loops, wait for them (handling signals in the main thread), return the outcomes."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self._install_signal_handlers()
        self.housekeeping()
        threading.Thread(target=self._housekeeping_loop, name=f"{self.config.name}/housekeeping", daemon=True).start()
        threads = [threading.Thread(target=self.loop, args=(n,), name=f"{self.config.name}/{n}", daemon=True)
                   for n in range(1, self.config.concurrency + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
        if self._abort_timer:
            self._abort_timer.cancel()
        return self.outcomes

    def stop(self, reason: str = "shutting down") -> None:
        """Stop claiming; abort running jobs after the grace period (or now, on a second call)."""
        if self.stopping.is_set():
            self._abort_all(f"worker {reason} (forced)")
            return
        self.stopping.set()
        running = len(self._running)
        self._echo(f"{self.config.name}: {reason}: no more claims; {running} running job(s) get "
                   f"{self.config.grace_seconds:g}s to finish")
        self._abort_timer = threading.Timer(self.config.grace_seconds, self._abort_all,
                                            args=(f"worker {reason}: grace period over",))
        self._abort_timer.daemon = True
        self._abort_timer.start()

    def _abort_all(self, reason: str) -> None:
        with self._lock:
            self._abort_reason = reason
            contexts = list(self._running.values())
        for ctx in contexts:
            ctx.abort(reason)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # in-process use (tests): the caller stops us with stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda num, _frame: self.stop(f"got {signal.Signals(num).name}"))

    # -- claim loop ------------------------------------------------------------------------
    def loop(self, number: int) -> None:
        """Claim and run jobs until stopping; with ``once``, at most one claim (one job, or one batch)."""
        while not self.stopping.is_set():
            jobs = self._claim()
            if len(jobs) == 1 and self.config.batch == 1:
                self.run_job(jobs[0])
            elif jobs:
                self.run_batch(jobs)
            if self.config.once:
                return
            if not jobs:
                self._idle()

    def _claim(self) -> list[Job]:
        claim = {"worker": self.config.name, "kinds": self.config.kinds, "sites": self.config.sites,
                 "methods": self.config.methods, "lease_seconds": self.config.lease_seconds}
        try:
            if self.config.batch > 1:
                return self.client.claim_batch(max_jobs=self.config.batch, **claim)
            job = self.client.claim(**claim)
            return [] if job is None else [job]
        except ApiUnavailable as exc:
            self._echo(f"{self.config.name}: cannot claim: {exc}")
        except ApiError as exc:
            # 400 (unknown kind/site/method), 401 (bad token), 403 (site not allowed), 404 (wrong URL):
            # the configuration is wrong, and asking again every few seconds will not fix it.
            self._echo(f"{self.config.name}: claim refused, stopping: {exc}")
            self.stopping.set()
        except (ValueError, KeyError, TypeError) as exc:  # not JSON: a proxy's error page, a wrong URL
            self._echo(f"{self.config.name}: claim answer unreadable: {exc!r}")
        return []

    def _idle(self) -> None:
        wait = self.config.poll_interval * random.uniform(0.8, 1.2)
        self.stopping.wait(wait)

    # -- one job ---------------------------------------------------------------------------
    def run_job(self, job: Job) -> Outcome:
        """Run one claimed job under a heartbeat and report it; never raises."""
        started = time.monotonic()
        with open(self._log_path(job), "a", encoding="utf-8") as log_file:
            ctx = self._context(job, log_file)
            outcome = self._attempt(ctx)
            self._drop_unusable_partials(ctx, outcome)
        return self._finish(job, outcome, started)

    def run_batch(self, jobs: list[Job]) -> list[Outcome]:
        """Run the jobs of a batch claim in turn, each under its heartbeat, then report them in one request.

        A job whose lease ran out while it waited its turn is not started (another worker may have it).
        """
        started = time.monotonic()
        with ExitStack() as files:
            attempts = []
            for job in jobs:
                ctx = self._context(job, files.enter_context(open(self._log_path(job), "a", encoding="utf-8")))
                if _lease_over(job):
                    ctx.log("not started: its lease ran out while it waited its turn in the batch")
                    attempts.append((ctx, Outcome(job["kind"], job["id"], "lease-lost", "lease ran out before start",
                                                  str(self._log_path(job)))))
                else:
                    attempts.append((ctx, self._attempt(ctx, defer=True)))
            answers = self._send_batch([a for _, a in attempts if isinstance(a, Deferred)])
            outcomes = []
            for ctx, attempt in attempts:
                outcome = self._settle(attempt, answers.get(attempt.job_id)) if isinstance(attempt, Deferred) \
                    else attempt
                self._drop_unusable_partials(ctx, outcome)
                outcomes.append(outcome)
        return [self._finish(job, outcome, started) for job, outcome in zip(jobs, outcomes, strict=True)]

    def _context(self, job: Job, log_file) -> JobContext:
        ctx = JobContext(job=job, log_file=log_file, commands=self.config.commands,
                         checksum_command=self.config.checksum_command, journal=self.journal)
        ctx.log(f"{self.config.name} claimed {job['kind']} #{job['id']} attempt {job.get('attempt')} "
                f"(lease until {job.get('lease_expires_at')})")
        return ctx

    def _attempt(self, ctx: JobContext, *, defer: bool = False) -> Outcome | Deferred:
        """Do the job under a heartbeat; report it (``defer``: return the report to send with the batch)."""
        job = ctx.job
        with self._lock:
            self._running[id(ctx)] = ctx
            if self._abort_reason:  # the claim answer arrived after the grace period ran out
                ctx.abort(self._abort_reason)
        heartbeat = Heartbeat(self.client, ctx, lease_seconds=self.config.lease_seconds)
        heartbeat.start()
        try:
            return self._execute(ctx, heartbeat, job["kind"], job["id"], job["lease_token"],
                                 str(self._log_path(job)), defer=defer)
        finally:
            heartbeat.stop()
            with self._lock:
                self._running.pop(id(ctx), None)

    def _finish(self, job: Job, outcome: Outcome, started: float) -> Outcome:
        outcome.seconds = time.monotonic() - started
        self.outcomes.append(outcome)
        self._echo(_job_line(self.config.name, job, outcome))
        return outcome

    def _send_batch(self, deferred: list[Deferred]) -> dict[int, dict[str, Any]]:
        """One batch report for the deferred reports; job id → ops-db's answer ({} when it could not be sent)."""
        if not deferred:
            return {}
        items = [{"kind": d.kind, "id": d.job_id, "outcome": d.outcome, "lease_token": d.token, **d.body}
                 for d in deferred]
        try:
            answers = self.client.report(items)
        except (ApiError, ApiUnavailable, ValueError, KeyError, TypeError) as exc:
            self._echo(f"{self.config.name}: could not report a batch of {len(items)} job(s): {exc}")
            for d in deferred:
                d.ctx.log(f"could not report {d.outcome}: {exc}")
            return {}
        return {answer["id"]: answer for answer in answers if isinstance(answer, dict) and "id" in answer}

    def _settle(self, d: Deferred, answer: dict[str, Any] | None) -> Outcome:
        """The outcome of a job reported in a batch, from ops-db's answer to its item."""
        code = answer.get("code") if answer else None
        if code is None:
            return Outcome(d.kind, d.job_id, "unreported", "the batch report got no answer", d.log_path)
        if code == 409:
            d.ctx.log(f"{d.outcome} refused, lease lost: {answer}")
            return Outcome(d.kind, d.job_id, "lease-lost", f"lease lost before {d.outcome}", d.log_path)
        if code != 200 and d.outcome == "complete":
            # The server refused the result (e.g. 400): say so with fail rather than leave it claimed.
            d.ctx.log(f"complete refused: {answer}")
            refusal = answer.get("errors") or answer.get("detail")
            return self._report_fail(d.ctx, d.kind, d.job_id, d.token, d.log_path,
                                     f"result refused by ops-db: {refusal}", retryable=True)
        if code != 200:
            d.ctx.log(f"could not report the failure: {answer}")
            return Outcome(d.kind, d.job_id, "unreported", f"{d.detail} (report refused: {answer})", d.log_path)
        d.ctx.log(f"reported {d.outcome} in a batch: {answer}")
        if d.outcome == "complete":
            return Outcome(d.kind, d.job_id, "completed", d.detail, d.log_path)
        return Outcome(d.kind, d.job_id, "failed", f"{d.detail} → {answer.get('status', '?')}", d.log_path,
                       job_status=str(answer.get("status", "")))

    def _log_path(self, job: Job) -> Path:
        return (self.config.log_dir / f"{job['kind']}-{job['id']}-attempt{job.get('attempt', 0)}.log").resolve()

    def _execute(self, ctx: JobContext, heartbeat: Heartbeat, kind: str, job_id: int, token: str,
                 log_path: str, *, defer: bool = False) -> Outcome | Deferred:
        handler = HANDLERS.get(kind)
        try:
            if handler is None:
                raise UnknownKind(f"this worker does not know job kind {kind!r}")
            result = handler(ctx.job, ctx)
            heartbeat.finish()  # no more heartbeats: the report itself tells ops-db how it went
            if ctx.lease_lost:  # lost while finishing: the result must not be reported
                raise JobAborted(ctx.cancel_reason)
        except JobAborted as exc:
            heartbeat.finish()
            return self._report_abort(ctx, kind, job_id, token, log_path, str(exc), defer=defer)
        except Exception as exc:  # noqa: BLE001 - any failure of the job is reported, not raised
            heartbeat.finish()
            ctx.log(f"FAILED: {type(exc).__name__}: {exc}")
            return self._report_fail(ctx, kind, job_id, token, log_path, str(exc) or type(exc).__name__,
                                     retryable=is_retryable(exc), defer=defer,
                                     source_corrupt=isinstance(exc, SourceCorrupt))
        if defer:
            ctx.log(f"to report complete with the batch: {result}")
            return Deferred(ctx, kind, job_id, token, log_path, "complete", {**result, "log_path": log_path},
                            _summary(result))
        return self._report_complete(ctx, kind, job_id, token, log_path, result)

    def _report_complete(self, ctx: JobContext, kind: str, job_id: int, token: str, log_path: str,
                         result: dict[str, Any]) -> Outcome:
        ctx.log(f"reporting complete: {result}")
        try:
            self.client.complete(kind, job_id, token, {**result, "log_path": log_path})
        except LeaseLost as exc:
            ctx.log(f"complete refused, lease lost: {exc.body}")
            return Outcome(kind, job_id, "lease-lost", "lease lost before complete", log_path)
        except ApiError as exc:
            # The server refused the result (e.g. 400): say so with fail rather than leave it claimed.
            ctx.log(f"complete refused: {exc}")
            return self._report_fail(ctx, kind, job_id, token, log_path, f"result refused by ops-db: {exc.body}",
                                     retryable=True)
        except ApiUnavailable as exc:
            ctx.log(f"could not report complete: {exc}")
            return Outcome(kind, job_id, "unreported", f"ops-db unreachable: {exc}", log_path)
        return Outcome(kind, job_id, "completed", _summary(result), log_path)

    def _report_abort(self, ctx: JobContext, kind: str, job_id: int, token: str, log_path: str,
                      reason: str, *, defer: bool = False) -> Outcome | Deferred:
        ctx.log(f"ABORTED: {reason}")
        if ctx.lease_lost:
            return Outcome(kind, job_id, "lease-lost", reason, log_path)
        return self._report_fail(ctx, kind, job_id, token, log_path, reason, retryable=True, defer=defer)

    def _report_fail(self, ctx: JobContext, kind: str, job_id: int, token: str, log_path: str, error: str,
                     *, retryable: bool, defer: bool = False, source_corrupt: bool = False) -> Outcome | Deferred:
        if defer:
            body = {"error": error[:ERROR_REPORT_LENGTH], "log_path": log_path, "retryable": retryable}
            if source_corrupt:
                body["source_corrupt"] = True
            return Deferred(ctx, kind, job_id, token, log_path, "fail", body, error)
        try:
            answer = self.client.fail(kind, job_id, token, error=error[:ERROR_REPORT_LENGTH], log_path=log_path,
                                      retryable=retryable, source_corrupt=source_corrupt)
        except LeaseLost as exc:
            ctx.log(f"fail refused, lease lost: {exc.body}")
            return Outcome(kind, job_id, "lease-lost", error, log_path)
        except (ApiError, ApiUnavailable) as exc:
            ctx.log(f"could not report the failure: {exc}")
            return Outcome(kind, job_id, "unreported", f"{error} (report failed: {exc})", log_path)
        ctx.log(f"reported fail (retryable={retryable}): {answer}")
        return Outcome(kind, job_id, "failed", f"{error} → {answer.get('status', '?')}", log_path,
                       job_status=str(answer.get("status", "")))

    # -- partial files ---------------------------------------------------------------------
    def _drop_unusable_partials(self, ctx: JobContext, outcome: Outcome) -> None:
        """Partial files kept by an attempt after which no attempt follows (FAILED for good) are removed."""
        if not ctx.kept_partials or outcome.job_status in ("", *STILL_OPEN):
            return
        for path in ctx.kept_partials:
            if self._remove(path, ctx.key):
                ctx.log(f"removed {path}: the job is {outcome.job_status}, no attempt will resume it")

    def _remove(self, path: Path | str, key: str) -> bool:
        """Remove a partial file nobody holds, its journal record and its command's restart records."""
        if not storage.remove_partial(path):
            return False
        self.journal.forget(Path(path))
        remove_checkpoints(Path(path).parent, key)
        return True

    def _housekeeping_loop(self) -> None:
        while not self.stopping.wait(self.config.housekeeping_interval):
            self.housekeeping()

    def housekeeping(self) -> list[str]:
        """Remove partial files that no attempt will use; returns the paths removed.

        Skipped: partial files of jobs running here, and any file another attempt holds locked.
        Not resumable ones (a half-built tar, a half-extracted member) go at once; resumable ones
        when ops-db says their job is finished (done, cancelled, failed for good, gone) or that
        its partial data has been kept longer than its setting allows.
        """
        with self._lock:
            running = {ctx.key for ctx in self._running.values()}
        entries = [e for e in self.journal.entries() if e["key"] not in running]
        gone = [e for e in entries if not e["resumable"] or not Path(e["path"]).exists()]
        ask = [e for e in entries if e not in gone]
        verdicts = self._ask_about(ask)
        gone += [e for e in ask if verdicts.get(e["key"], (True, ""))[0] is False]
        removed = []
        for entry in gone:
            if self._remove(entry["path"], entry["key"]):
                removed.append(entry["path"])
                reason = verdicts.get(entry["key"], (False, "not resumable"))[1]
                self._echo(f"{self.config.name}: removed partial file {entry['path']} ({reason})")
        return removed

    def _ask_about(self, entries: list[dict[str, Any]]) -> dict[str, tuple[bool, str]]:
        """ops-db's verdict per job key: (keep, reason); an unreachable ops-db keeps everything."""
        jobs = {}
        for entry in entries:
            kind, _, job_id = entry["key"].rpartition("-")
            if job_id.isdecimal():
                jobs[entry["key"]] = {"kind": kind, "id": int(job_id)}
        if not jobs:
            return {}
        try:
            answer = self.client.partials(list(jobs.values()))
        except (ApiError, ApiUnavailable, ValueError) as exc:
            self._echo(f"{self.config.name}: housekeeping: cannot ask ops-db about {len(jobs)} partial file(s): {exc}")
            return {}
        return {f"{item['kind']}-{item['id']}": (bool(item["keep"]), str(item.get("reason", "")))
                for item in answer.get("jobs", []) if isinstance(item, dict) and {"kind", "id", "keep"} <= item.keys()}


class UnknownKind(Exception):
    """A job kind this worker has no handler for (a newer server)."""


class Heartbeat:
    """Extends the lease every third of its length (sooner when woken); aborts the job on 409."""

    def __init__(self, client: ApiClient, ctx: JobContext, *, lease_seconds: int):
        self.client, self.ctx, self.lease_seconds = client, ctx, lease_seconds
        self.interval = max(1.0, lease_seconds / 3)
        self._items_sent = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{ctx.job['id']}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self.ctx.wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            self.ctx.wake.wait(self.interval)
            self.ctx.wake.clear()
            if self._done.is_set() or self.ctx.cancel.is_set() or self.ctx.finished.is_set():
                return
            self.beat()

    def finish(self) -> None:
        """No more regular beats; first send any finished items (stage) not reported yet."""
        self.ctx.finished.set()
        if not self.ctx.lease_lost and len(self.ctx.items_done) > self._items_sent:
            self.beat()

    def beat(self) -> None:
        job = self.ctx.job
        extra: dict[str, Any] = {"bytes_done": self.ctx.bytes_done, "lease_seconds": self.lease_seconds,
                                 "resumed_from": self.ctx.resumed_from}
        items = list(self.ctx.items_done)
        if job["kind"] == "stage" and items:
            extra["items_done"] = items
        try:
            self.client.heartbeat(job["kind"], job["id"], job["lease_token"], **extra)
            self._items_sent = max(self._items_sent, len(items))
        except LeaseLost as exc:
            self.ctx.log(f"heartbeat refused: {exc.body}")
            self.ctx.abort("lease lost: ops-db refused the heartbeat (409)", lease_lost=True)
        except (ApiError, ApiUnavailable) as exc:
            # The lease may still be valid; the next beat tries again, and 409 is the real signal.
            self.ctx.log(f"heartbeat failed: {exc}")


def _lease_over(job: Job) -> bool:
    """Whether the job's lease (``lease_expires_at`` of the claim answer) has run out already."""
    try:
        expires = datetime.fromisoformat(str(job.get("lease_expires_at")))
    except ValueError:
        return False
    return expires.tzinfo is not None and expires <= datetime.now(UTC)


def _summary(result: dict[str, Any]) -> str:
    if "checksum" in result:
        size = f"{result['size']} bytes, " if result.get("size") is not None else ""
        return f"{size}checksum {result['checksum'][:16]}…"
    if "members" in result:
        return f"{len(result['members'])} member(s) unpacked"
    if "packages" in result:
        files = sum(len(p["files"]) for p in result["packages"])
        return f"{len(result['packages'])} package(s), {files} file(s) staged"
    return ""


def _job_line(name: str, job: Job, outcome: Outcome) -> str:
    return (f"{name}: {outcome.kind} #{outcome.job_id} attempt {job.get('attempt')}: {outcome.status} "
            f"in {outcome.seconds:.1f}s — {outcome.detail} (log {outcome.log_path})")
