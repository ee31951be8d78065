"""The scheduler: runs the planning passes in order, as the single leader among schedulers.

Passes (each in its own transaction, idempotent, set-based), declared in ``settings.SCHEDULER_PASSES``:
  leases → bundling → routing → unpacking → archiving → staging cleanup → route health → operations history
Lease recovery runs first so a job whose lease ran out is claimable again in the same tick;
jobs whose backoff ran out need nothing: ``due()`` makes them claimable.

Leader lock: on PostgreSQL a session-level ``pg_try_advisory_lock`` held on a dedicated
connection (it is released by the server if the process dies); on SQLite an exclusive
``flock`` on a file next to the database (released by the kernel if the process dies). A
scheduler that does not hold the lock does nothing and tries again at its next tick.
"""

import fcntl
import logging
import threading
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.utils import timezone

from opsdb.planning import PassResult
from opsdb.registry import scheduler_passes

log = logging.getLogger("opsdb.scheduler")

# One advisory-lock key for "the scheduler" in this database (a stable 31-bit number).
ADVISORY_LOCK_KEY = zlib.crc32(b"opsdb-scheduler-leader") & 0x7FFFFFFF


def passes() -> list[tuple[str, Callable[..., PassResult]]]:
    """The passes of one tick, in order (declared in ``settings.SCHEDULER_PASSES``)."""
    return list(scheduler_passes)


def run_passes(*, now: datetime | None = None) -> list[PassResult]:
    """Run every pass once, each in its own transaction (a failing pass does not undo the others)."""
    now = now or timezone.now()
    results = []
    for name, run in passes():
        try:
            with transaction.atomic():
                results.append(run(now=now))
        except Exception:
            log.exception("%s: pass failed; nothing of it was saved, it runs again next tick", name)
    return results


def plan_dry_run(*, now: datetime | None = None) -> list[PassResult]:
    """What the next tick would do, computed by running it in a transaction that is rolled back."""
    now = now or timezone.now()
    with transaction.atomic():
        results = [run(now=now) for _, run in passes()]
        transaction.set_rollback(True)
    return results


class LeaderLock:
    """At most one scheduler acts: a PostgreSQL advisory lock, or a file lock for SQLite."""

    def __init__(self, alias: str = DEFAULT_DB_ALIAS):
        self.alias = alias
        self.vendor = connections[alias].vendor
        self._connection = None
        self._file = None

    @property
    def held(self) -> bool:
        if self.vendor == "postgresql":
            return self._connection is not None and self._alive()
        return self._file is not None

    def acquire(self) -> bool:
        """Take the lock if free (never waits); True when this scheduler is the leader."""
        if self.held:
            return True
        self.release()
        return self._acquire_pg() if self.vendor == "postgresql" else self._acquire_file()

    def release(self) -> None:
        if self._connection is not None:
            try:
                with self._connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
            except Exception:  # the connection is gone: the server dropped the lock with it
                pass
            self._connection.close()
            self._connection = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def _acquire_pg(self) -> bool:
        # A dedicated session: the default connection may be closed or recycled between ticks,
        # which would silently drop a session-level lock.
        conn = connections.create_connection(self.alias)
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            got = cursor.fetchone()[0]
        if got:
            self._connection = conn
        else:
            conn.close()
        return bool(got)

    def _alive(self) -> bool:
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:
            log.warning("leader lock: lost the database session holding the lock")
            return False

    def _acquire_file(self) -> bool:
        handle = open(self.lock_path(), "a+")  # noqa: SIM115  (kept open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def lock_path(self) -> Path:
        name = str(connections[self.alias].settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            return Path(settings.VAR_DIR) / "scheduler.lock"
        return Path(f"{name}.scheduler-lock")


class Scheduler:
    """Runs ticks: take (or keep) the leader lock, then run the passes; stops on ``stop()``."""

    def __init__(self, *, interval: float = 30.0, lock: LeaderLock | None = None):
        self.interval = interval
        self.lock = lock or LeaderLock()
        self._stop = threading.Event()
        self._was_leader: bool | None = None

    def tick(self, *, now: datetime | None = None) -> list[PassResult] | None:
        """One round; None when another scheduler is the leader."""
        leader = self.lock.acquire()
        if leader != self._was_leader:
            log.info("scheduler: %s", "leader lock taken; running the passes" if leader
                     else "another scheduler holds the leader lock; waiting")
            self._was_leader = leader
        if not leader:
            return None
        return run_passes(now=now)

    def run_forever(self) -> None:
        log.info("scheduler: started, a tick every %s s", self.interval)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # e.g. the database is unreachable: keep the loop, try next tick
                    log.exception("scheduler: tick failed; trying again in %s s", self.interval)
                    self.lock.release()
                close_old_connections()  # like after a request: drop broken or too old connections
                self._stop.wait(self.interval)
        finally:
            self.lock.release()
            log.info("scheduler: stopped")

    def stop(self) -> None:
        self._stop.set()
