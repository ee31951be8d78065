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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker import storage
from worker.client import ApiClient, ApiError, ApiUnavailable, LeaseLost
from worker.jobs import HANDLERS, Job, JobAborted, JobContext, is_retryable, remove_checkpoints
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
        """Claim and run jobs until stopping; with ``once``, at most one job."""
        while not self.stopping.is_set():
            job = self._claim()
            if job is not None:
                self.run_job(job)
            if self.config.once:
                return
            if job is None:
                self._idle()

    def _claim(self) -> Job | None:
        try:
            return self.client.claim(worker=self.config.name, kinds=self.config.kinds, sites=self.config.sites,
                                     methods=self.config.methods, lease_seconds=self.config.lease_seconds)
        except ApiUnavailable as exc:
            self._echo(f"{self.config.name}: cannot claim: {exc}")
        except ApiError as exc:
            # 400 (unknown kind/site/method), 401 (bad token), 403 (site not allowed), 404 (wrong URL):
            # the configuration is wrong, and asking again every few seconds will not fix it.
            self._echo(f"{self.config.name}: claim refused, stopping: {exc}")
            self.stopping.set()
        except ValueError as exc:  # not JSON: a proxy's error page, a wrong URL
            self._echo(f"{self.config.name}: claim answer unreadable: {exc}")
        return None

    def _idle(self) -> None:
        wait = self.config.poll_interval * random.uniform(0.8, 1.2)
        self.stopping.wait(wait)

    # -- one job ---------------------------------------------------------------------------
    def run_job(self, job: Job) -> Outcome:
        """Run one claimed job under a heartbeat and report it; never raises."""
        kind, job_id, token = job["kind"], job["id"], job["lease_token"]
        log_path = self._log_path(job)
        started = time.monotonic()
        with open(log_path, "a", encoding="utf-8") as log_file:
            ctx = JobContext(job=job, log_file=log_file, commands=self.config.commands,
                             checksum_command=self.config.checksum_command, journal=self.journal)
            ctx.log(f"{self.config.name} claimed {kind} #{job_id} attempt {job.get('attempt')} "
                    f"(lease until {job.get('lease_expires_at')})")
            with self._lock:
                self._running[id(ctx)] = ctx
                if self._abort_reason:  # the claim answer arrived after the grace period ran out
                    ctx.abort(self._abort_reason)
            heartbeat = Heartbeat(self.client, ctx, lease_seconds=self.config.lease_seconds)
            heartbeat.start()
            try:
                outcome = self._execute(ctx, heartbeat, kind, job_id, token, str(log_path))
            finally:
                heartbeat.stop()
                with self._lock:
                    self._running.pop(id(ctx), None)
            self._drop_unusable_partials(ctx, outcome)
        outcome.seconds = time.monotonic() - started
        self.outcomes.append(outcome)
        self._echo(_job_line(self.config.name, job, outcome))
        return outcome

    def _log_path(self, job: Job) -> Path:
        return (self.config.log_dir / f"{job['kind']}-{job['id']}-attempt{job.get('attempt', 0)}.log").resolve()

    def _execute(self, ctx: JobContext, heartbeat: Heartbeat, kind: str, job_id: int, token: str,
                 log_path: str) -> Outcome:
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
            return self._report_abort(ctx, kind, job_id, token, log_path, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure of the job is reported, not raised
            heartbeat.finish()
            ctx.log(f"FAILED: {type(exc).__name__}: {exc}")
            return self._report_fail(ctx, kind, job_id, token, log_path, str(exc) or type(exc).__name__,
                                     retryable=is_retryable(exc))
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
                      reason: str) -> Outcome:
        ctx.log(f"ABORTED: {reason}")
        if ctx.lease_lost:
            return Outcome(kind, job_id, "lease-lost", reason, log_path)
        return self._report_fail(ctx, kind, job_id, token, log_path, reason, retryable=True)

    def _report_fail(self, ctx: JobContext, kind: str, job_id: int, token: str, log_path: str, error: str,
                     *, retryable: bool) -> Outcome:
        try:
            answer = self.client.fail(kind, job_id, token, error=error[:ERROR_REPORT_LENGTH], log_path=log_path,
                                      retryable=retryable)
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
