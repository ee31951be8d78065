"""Resumable transfers end to end: a real worker process, the live server, real files, real rsync.

An interrupted attempt leaves its data in the job's partial file; the next attempt checks it
against the source and sends only the rest. What moved again is measured from what the copy
command itself reports (rsync's "Literal data"), not from what the worker believes.
"""

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from opsdb.choices import JobStatus
from opsdb.services import job_cancel, job_expire
from tests import factories as f
from tests.worker.conftest import flip_byte, sha256, wait_until
from transfers.models import DataTransfer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SIZE = 4_000_000
# 500 KB/s: about 8 s for the whole bundle, long enough to stop it half way.
RSYNC = "rsync --partial --append-verify --stats --bwlimit=500 {source} {destination}"

# Writes the first half of the bundle, then hangs until it is stopped.
HALF_THEN_HANG = f"sh -c 'head -c {SIZE // 2} \"$0\" > \"$1\" && exec sleep 60' {{source}} {{destination}}"

needs_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


def big_transfer(topo, method: str = "rsync") -> tuple[DataTransfer, bytes]:
    """A transfer of a 4 MB bundle (random bytes) from the ccat buffer to the cologne buffer."""
    data = os.urandom(SIZE)
    dtp = f.DataTransferPackageFactory(name="dtp-big.tar", origin_location=topo.ccat_buffer, size=SIZE,
                                       checksum=sha256(data))
    source = Path(topo.ccat_buffer.base_path, dtp.archive_path)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    transfer = f.DataTransferFactory(transfer_package=dtp, origin_location=topo.ccat_buffer,
                                     destination_location=topo.cologne_buffer, method=method)
    return transfer, data


def partial_of(topo, transfer: DataTransfer) -> Path:
    return Path(topo.cologne_buffer.base_path, "bundles", f".dtp-big.tar.transfer-{transfer.pk}.partial")


def landed(topo) -> Path:
    return Path(topo.cologne_buffer.base_path, "bundles", "dtp-big.tar")


def processes_writing(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (the copy command and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def literal_bytes(log_text: str) -> int:
    """What rsync says it sent (the bytes that moved), from the job's log."""
    return int(re.search(r"Literal data: ([\d,]+) bytes", log_text).group(1).replace(",", ""))


def expire_lease(transfer: DataTransfer) -> None:
    DataTransfer.objects.filter(pk=transfer.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert job_expire(job=DataTransfer.objects.get(pk=transfer.pk))
    DataTransfer.objects.filter(pk=transfer.pk).update(next_attempt_at=None)  # no backoff wait in the test


def kill_worker_half_way(topo, launcher, transfer) -> int:
    """Start a worker, SIGKILL it once half the bundle is in the partial file; the bytes it left."""
    partial = partial_of(topo, transfer)
    process = launcher.start("--kinds", "transfer", "--methods", "rsync", "--method-command", f"rsync={RSYNC}")
    wait_until(lambda: partial.exists() and partial.stat().st_size >= SIZE // 2, timeout=30,
               interval=0.02, message="half the bundle in the partial file")
    process.kill()
    process.communicate(timeout=10)
    # The copy command dies with the worker (it runs in its own session, so nothing else would stop
    # it): gone within 2 s, long before it could have finished the bundle (4 s more).
    wait_until(lambda: not processes_writing(partial), timeout=2, interval=0.02, message="the copy command to stop")
    left = partial.stat().st_size
    assert left < SIZE
    return left


@needs_rsync
def test_transfer_killed_half_way_resumes_and_moves_at_most_55_percent_again(topology, launcher):
    transfer, data = big_transfer(topology)
    left = kill_worker_half_way(topology, launcher, transfer)
    time.sleep(0.5)
    assert partial_of(topology, transfer).stat().st_size == left  # nothing writes to it any more
    expire_lease(transfer)

    run = launcher.run("--once", "--kinds", "transfer", "--methods", "rsync", "--method-command", f"rsync={RSYNC}")

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout, run.stderr)
    assert landed(topology).read_bytes() == data
    log = Path(transfer.log_path).read_text()
    moved_again = literal_bytes(log)
    assert SIZE // 2 <= left < SIZE
    assert moved_again == SIZE - left
    assert moved_again <= 0.55 * SIZE
    assert f"resumed at {left} of {SIZE} bytes" in log
    assert not partial_of(topology, transfer).exists()


@needs_rsync
def test_transfer_corrupted_partial_file_is_discarded_and_the_transfer_completes(topology, launcher):
    transfer, data = big_transfer(topology)
    left = kill_worker_half_way(topology, launcher, transfer)
    flip_byte(partial_of(topology, transfer), offset=left // 2)  # corrupted in the middle
    expire_lease(transfer)

    run = launcher.run("--once", "--kinds", "transfer", "--methods", "rsync", "--method-command", f"rsync={RSYNC}")

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout, run.stderr)
    assert landed(topology).read_bytes() == data
    log = Path(transfer.log_path).read_text()
    assert "does not match the source: discarded" in log
    assert literal_bytes(log) == SIZE
    assert sorted(p.name for p in landed(topology).parent.iterdir()) == ["dtp-big.tar"]


def test_in_process_copy_resumes_a_partial_file_and_discards_a_corrupted_one(topology, launcher):
    transfer, data = big_transfer(topology, method="copy")
    partial = partial_of(topology, transfer)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data[: SIZE // 2])
    flip_byte(partial, offset=SIZE // 4)

    run = launcher.run("--once", "--kinds", "transfer")

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout, run.stderr)
    assert landed(topology).read_bytes() == data
    log = Path(transfer.log_path).read_text()
    assert "does not match the source's first bytes after 0 bytes: discarded" in log
    assert f"copied {SIZE} bytes after 0 kept" in log
    assert not partial.exists()


def stop_half_way(topo, launcher, transfer) -> None:
    """A worker whose command writes half the bundle and hangs; SIGTERM once the half is there."""
    partial = partial_of(topo, transfer)
    process = launcher.start("--kinds", "transfer", "--methods", "bbcp", "--grace-seconds", "0.2",
                             "--method-command", f"bbcp={HALF_THEN_HANG}")
    wait_until(lambda: partial.exists() and partial.stat().st_size == SIZE // 2, message="the first half")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)


def test_sigterm_keeps_the_partial_file_and_the_next_attempt_resumes_it(topology, launcher):
    transfer, data = big_transfer(topology, method="bbcp")
    partial = partial_of(topology, transfer)
    stop_half_way(topology, launcher, transfer)
    transfer.refresh_from_db()
    assert (transfer.status, partial.stat().st_size) == (JobStatus.PENDING, SIZE // 2)
    DataTransfer.objects.filter(pk=transfer.pk).update(next_attempt_at=None)

    # The documentation's template for a tool that appends from an offset.
    rest = "dd if={source} of={destination} bs=4M iflag=skip_bytes skip={resume_bytes} oflag=append conv=notrunc"
    run = launcher.run("--once", "--kinds", "transfer", "--methods", "bbcp", "--method-command", f"bbcp={rest}")

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout, run.stderr)
    assert landed(topology).read_bytes() == data
    assert f"resumed at {SIZE // 2} of {SIZE} bytes" in Path(transfer.log_path).read_text()


def test_partial_file_of_an_attempt_that_leaves_the_job_failed_is_removed(topology, launcher):
    transfer, _ = big_transfer(topology, method="bbcp")
    DataTransfer.objects.filter(pk=transfer.pk).update(attempts=transfer.max_attempts() - 1)  # the last attempt

    stop_half_way(topology, launcher, transfer)

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.FAILED
    assert list(partial_of(topology, transfer).parent.iterdir()) == []
    assert "no attempt will resume it" in Path(transfer.log_path).read_text()


def test_operator_cancel_removes_the_partial_file(topology, launcher):
    transfer, _ = big_transfer(topology, method="bbcp")
    partial = partial_of(topology, transfer)
    stop_half_way(topology, launcher, transfer)
    # While the job waits for its next attempt, housekeeping keeps the partial file.
    kept = launcher.run("--once", "--kinds", "package")
    assert partial.stat().st_size == SIZE // 2, kept.stdout

    job_cancel(job=DataTransfer.objects.get(pk=transfer.pk), reason="not needed any more")
    run = launcher.run("--once", "--kinds", "package")  # nothing to claim: housekeeping at start does it

    assert not partial.exists(), run.stdout
    assert f"removed partial file {partial} (the job is cancelled)" in run.stdout
    assert list(partial.parent.iterdir()) == []
