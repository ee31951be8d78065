"""The scheduler: lease recovery, the pass runner, the leader lock and the commands."""

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus, LogLevel
from opsdb.models import DataTransferLog, RawDataPackageCopy
from opsdb.recovery import expire_leases
from opsdb.registry import job_kinds, scheduler_passes
from opsdb.scheduler import LeaderLock, Scheduler, plan_dry_run, run_passes
from opsdb.services import LeaseConflict, claim_next, job_claim, job_complete
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.topology import GB, arrive, direct, finish, relay, site, waiting
from transfers.models import DataTransfer, DataTransferPackage, DataTransferUnpack

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def expired_lease(job, worker="w1"):
    """Claim ``job`` and let its lease run out."""
    job = job_claim(job=job, worker=worker)
    type(job).objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    job.refresh_from_db()
    return job


# --- lease recovery -------------------------------------------------------------------------------


def test_expired_lease_counts_as_failed_attempt_with_backoff():
    job = expired_lease(f.DataTransferFactory())
    token = job.lease_token
    now = timezone.now()

    result = expire_leases(now=now)

    job.refresh_from_db()
    assert result.count == 1
    assert (job.status, job.attempts, job.lease_token, job.lease_expires_at) == (JobStatus.PENDING, 1, "", None)
    assert job.next_attempt_at > now
    assert "w1" in job.last_error
    with pytest.raises(LeaseConflict):
        job_complete(job=job, lease_token=token)


def test_expired_lease_is_recorded_in_state_log_and_transfer_log():
    job = expired_lease(f.DataTransferFactory())

    expire_leases(now=timezone.now())

    entry = StateLog.objects.filter(object_id=job.pk, transition="expire").get()
    line = DataTransferLog.objects.get(object_id=job.pk, content_type=ContentType.objects.get_for_model(job))
    assert (entry.source_state, entry.state) == (JobStatus.ACTIVE, JobStatus.PENDING)
    assert (line.level, line.worker, line.attempt) == (LogLevel.WARNING, "w1", 1)


def test_expired_lease_on_last_attempt_fails_the_job(settings):
    settings.JOB_MAX_ATTEMPTS = 2
    job = f.DataTransferUnpackFactory(attempts=1)
    expired_lease(job)

    expire_leases(now=timezone.now())

    job.refresh_from_db()
    assert (job.status, job.attempts, job.next_attempt_at) == (JobStatus.FAILED, 2, None)


def test_expired_archive_lease_three_times_requires_intervention():
    job = f.LongTermArchiveTransferFactory()
    states = []
    for _ in range(3):
        LongTermArchiveTransfer.objects.filter(pk=job.pk).update(next_attempt_at=None)
        job.refresh_from_db()
        expired_lease(job)
        expire_leases(now=timezone.now())
        job.refresh_from_db()
        states.append((job.status, job.requires_intervention))

    assert states == [(JobStatus.PENDING, False), (JobStatus.PENDING, False), (JobStatus.FAILED, True)]


def test_unexpired_lease_is_left_alone():
    job = job_claim(job=f.DataTransferFactory(), worker="w1")

    assert expire_leases(now=timezone.now()).count == 0
    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE


def test_backoff_makes_the_job_claimable_only_when_it_ran_out():
    job = expired_lease(f.DataTransferFactory())
    now = timezone.now()
    expire_leases(now=now)
    job.refresh_from_db()

    too_early = claim_next(queryset=DataTransfer.objects.all(), worker="w2", now=now)
    later = claim_next(queryset=DataTransfer.objects.all(), worker="w2",
                       now=job.next_attempt_at + timedelta(seconds=1))

    assert too_early is None
    assert (later.pk, later.status, later.lease_holder) == (job.pk, JobStatus.ACTIVE, "w2")


@pytest.mark.parametrize("expired", [1, 3, 10])
def test_lease_recovery_query_count_does_not_grow(expired):
    for model in job_kinds.models():
        ContentType.objects.get_for_model(model)  # warm the cache: counts must not depend on it
    for _ in range(expired):
        expired_lease(f.DataTransferFactory())
        expired_lease(f.LongTermArchiveTransferFactory())

    with CaptureQueriesContext(connection) as queries:
        result = expire_leases(now=timezone.now())

    assert result.count == 2 * expired
    # per kind: 1 read; per kind with expiries: bulk update, status update, StateLog, log lines
    assert len(queries) == len(job_kinds.models()) + 2 * 4


# --- the pass runner ------------------------------------------------------------------------------


def unpacked_at(unpack):
    """The worker's unpack result: a raw package copy per member at the destination."""
    def apply(job):
        transfer = job.transfer
        RawDataPackageCopy.objects.bulk_create([
            RawDataPackageCopy(raw_package=m.raw_package, location=transfer.destination_location,
                               path=f"raw/{m.raw_package.name}")
            for m in transfer.transfer_package.members.select_related("raw_package")
        ])
    return finish(unpack, apply=apply)


def test_passes_move_data_from_buffer_to_archives_through_a_relay():
    ccat, cologne, cornell = site("ccat", archive=False), site("cologne"), site("cornell")
    direct(ccat, cologne, bundle_target_size=10 * GB)
    relay(ccat, cologne, cornell)
    raws = {waiting(ccat.buffer).pk for _ in range(2)}

    run_passes()
    build_job = DataTransferPackage.objects.get()
    from tests.topology import build
    build(build_job)
    run_passes()
    arrive(DataTransfer.objects.get())
    run_passes()
    unpacked_at(DataTransferUnpack.objects.get())
    arrive(DataTransfer.objects.get(hop=2))
    run_passes()
    unpacked_at(DataTransferUnpack.objects.get(transfer__hop=2))
    run_passes()
    again = run_passes()

    archived = set(LongTermArchiveTransfer.objects.values_list("raw_package_id", "destination_location__site__name"))
    assert archived == {(r, s) for r in raws for s in ("cologne", "cornell")}
    assert sum(r.count for r in again) == 0


def test_a_failing_pass_does_not_stop_the_others(monkeypatch):
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    waiting(cologne.buffer)

    def broken(**kwargs):
        raise RuntimeError("boom")

    declared = [(name, broken if name == "bundling" else run) for name, run in scheduler_passes]
    monkeypatch.setattr("opsdb.scheduler.passes", lambda: declared)
    results = run_passes()

    assert "bundling" not in [r.name for r in results]
    assert LongTermArchiveTransfer.objects.count() == 1


def test_dry_run_changes_nothing_and_says_what_it_would_do():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    waiting(cologne.buffer)
    expired_lease(f.DataTransferFactory())

    results = plan_dry_run()

    lines = [line for r in results for line in r.lines]
    assert DataTransferPackage.objects.filter(origin_location=ccat.buffer).count() == 0
    assert LongTermArchiveTransfer.objects.count() == 0
    assert DataTransfer.objects.get().status == JobStatus.ACTIVE
    assert any(line.startswith("bundling: 1 bundle (5.0 GB) from 1 package at ccat:buffer") for line in lines)
    assert any(line.startswith("archiving: 1 archive transfer: cologne:buffer → cologne:archive ×1") for line in lines)


def test_plan_command_prints_the_plan():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    out = StringIO()

    call_command("plan", "--dry-run", stdout=out)

    assert "bundling: 1 bundle (5.0 GB) from 1 package at ccat:buffer" in out.getvalue()
    assert "nothing was changed" in out.getvalue()
    assert DataTransferPackage.objects.count() == 0


def test_plan_command_without_dry_run_is_refused():
    with pytest.raises(CommandError, match="--dry-run"):
        call_command("plan")


def test_run_scheduler_once_runs_one_tick():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    out = StringIO()

    call_command("run_scheduler", "--once", stdout=out)

    assert DataTransferPackage.objects.count() == 1
    assert "bundling 1" in out.getvalue()


def test_run_scheduler_once_does_nothing_without_the_lock():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    other = LeaderLock()
    assert other.acquire()
    out = StringIO()

    try:
        call_command("run_scheduler", "--once", stdout=out)
    finally:
        other.release()

    assert DataTransferPackage.objects.count() == 0
    assert "Another scheduler holds the leader lock" in out.getvalue()


# --- leader lock ----------------------------------------------------------------------------------


def test_leader_lock_is_held_by_one_at_a_time():
    first, second = LeaderLock(), LeaderLock()

    try:
        got = [first.acquire(), second.acquire(), first.acquire()]
        first.release()
        got.append(second.acquire())
    finally:
        first.release()
        second.release()

    assert got == [True, False, True, True]


def test_scheduler_that_is_not_leader_does_nothing():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    waiting(ccat.buffer)
    leader, follower = Scheduler(), Scheduler()

    try:
        assert leader.lock.acquire()
        follower_result = follower.tick()
    finally:
        leader.lock.release()
        follower.lock.release()

    assert follower_result is None
    assert DataTransferPackage.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_only_one_acts():
    ccat, cologne = site("ccat", archive=False), site("cologne")
    direct(ccat, cologne, bundle_target_size=5 * GB)
    for _ in range(4):
        waiting(ccat.buffer)
    start, done = threading.Barrier(2), threading.Barrier(2)
    results = []

    def scheduler_thread():
        scheduler = Scheduler()
        try:
            start.wait()
            results.append(scheduler.tick())
            done.wait()  # the leader keeps the lock until both have tried
        finally:
            scheduler.lock.release()
            connections.close_all()

    threads = [threading.Thread(target=scheduler_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(r is None for r in results) == [False, True]
    assert DataTransferPackage.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_run_forever_stops_when_asked():
    scheduler = Scheduler(interval=0.05)
    ticks = []
    original = scheduler.tick

    def counting_tick(**kwargs):
        ticks.append(1)
        if len(ticks) == 2:
            scheduler.stop()
        return original(**kwargs)

    scheduler.tick = counting_tick
    scheduler.run_forever()

    assert len(ticks) == 2
    assert not scheduler.lock.held


def scheduler_process(interval: str = "0.2") -> subprocess.Popen:
    """``manage.py run_scheduler`` in a child process on the test database."""
    db = connection.settings_dict
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(db["NAME"])
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_scheduler", "--interval", interval], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a stuck child must fail the test, not hang it
    watchdog.daemon = True
    watchdog.start()
    return process


def read_until(process: subprocess.Popen, text: str) -> str:
    """Lines of the process's output up to the first one containing ``text`` ('' if it ended first)."""
    for line in process.stdout:
        if text in line:
            return line
    return ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_scheduler_stops_cleanly_on_sigterm():
    process = scheduler_process()
    try:
        read_until(process, "leader lock taken")
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]
    finally:
        process.kill()

    assert process.returncode == 0
    assert "scheduler: stopped" in output


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_second_scheduler_process_waits_then_takes_over():
    leader = scheduler_process()
    follower = None
    try:
        assert read_until(leader, "leader lock taken")
        follower = scheduler_process()
        waiting_line = read_until(follower, "another scheduler holds the leader lock")
        leader.send_signal(signal.SIGTERM)
        leader.communicate(timeout=20)
        takeover_line = read_until(follower, "leader lock taken")
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    finally:
        for process in (leader, follower):
            if process is not None:
                process.kill()

    assert waiting_line
    assert takeover_line
    assert (leader.returncode, follower.returncode) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_run_forever_survives_a_failing_tick(monkeypatch):
    scheduler = Scheduler(interval=0.01)
    calls = []

    def flaky_passes(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        scheduler.stop()
        return []

    monkeypatch.setattr("opsdb.scheduler.run_passes", flaky_passes)
    scheduler.run_forever()

    assert len(calls) == 2


def test_expired_lease_that_fails_a_staging_job_emails_its_owner(settings, django_capture_on_commit_callbacks):
    from django.core import mail

    settings.JOB_MAX_ATTEMPTS = 1
    job = f.StagingJobFactory(owner=f.UserFactory(username="alice"))
    job = job_claim(job=job, worker="w")
    type(job).objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        expire_leases(now=timezone.now())

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert [m.to for m in mail.outbox] == [["alice@example.org"]]
