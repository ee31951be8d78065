"""The reference worker end to end: a real worker process, the live server, real files in temp folders.

The scheduler creates follow-up jobs in production; here each test creates the next job row
itself (transfer after the package is built, unpack after the transfer, archive after unpacking).
"""

import signal
import time
from pathlib import Path

import pytest

from opsdb.choices import CopyStatus, JobStatus, LogLevel
from opsdb.models import DataTransferLog, RawDataFileCopy, RawDataPackageCopy
from opsdb.services import job_claim, job_expire
from staging.choices import StagedPackageState
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.worker.conftest import FlakyProxy, WorkerLauncher, file_sha256, flip_byte, sha256, wait_until
from transfers.models import DataTransfer, DataTransferPackage, DataTransferPackageCopy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


SLOW_COPY = "sh -c 'sleep {seconds} && cp \"$0\" \"$1\"' {{source}} {{destination}}"


def make_bundle(topo) -> DataTransferPackage:
    dtp = f.DataTransferPackageFactory(name="dtp-ccat-000001.tar", origin_location=topo.ccat_buffer,
                                       payload_size=sum(p.size for p in topo.packages))
    for package in topo.packages:
        f.DataTransferPackageMemberFactory(transfer_package=dtp, raw_package=package)
    return dtp


def build_bundle(topo, launcher) -> DataTransferPackage:
    dtp = make_bundle(topo)
    run = launcher.run("--once", "--kinds", "package")
    assert run.returncode == 0, run.stderr
    dtp.refresh_from_db()
    assert dtp.status == JobStatus.COMPLETED, (dtp.last_error, run.stdout, run.stderr)
    return dtp


def make_transfer(topo, dtp, method: str = "copy") -> DataTransfer:
    return f.DataTransferFactory(transfer_package=dtp, origin_location=topo.ccat_buffer,
                                 destination_location=topo.cologne_buffer, method=method)


def error_logs(job) -> list[DataTransferLog]:
    return [log for log in job.logs.all() if log.level == LogLevel.ERROR]


def test_worker_builds_transfers_unpacks_and_archives_real_files(topology, launcher):
    topo = topology

    # package: the bundle is built at the ccat buffer from the real raw package archives.
    dtp = build_bundle(topo, launcher)
    bundle = topo.path(topo.ccat_buffer, "bundles/dtp-ccat-000001.tar")
    assert (dtp.size, dtp.checksum) == (bundle.stat().st_size, file_sha256(bundle))
    assert DataTransferPackageCopy.objects.get(transfer_package=dtp, location=topo.ccat_buffer).path == \
        "bundles/dtp-ccat-000001.tar"
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["dtp-ccat-000001.tar"]  # no temporary left

    # transfer (copy) ccat buffer → cologne buffer, verified at the destination.
    transfer = make_transfer(topo, dtp)
    run = launcher.run("--once", "--kinds", "transfer")
    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout, run.stderr)
    landed = topo.path(topo.cologne_buffer, "bundles/dtp-ccat-000001.tar")
    assert file_sha256(landed) == dtp.checksum
    assert DataTransferPackageCopy.objects.get(transfer_package=dtp, location=topo.cologne_buffer).status == \
        CopyStatus.PRESENT

    # unpack at cologne: every raw package archive back, byte for byte.
    unpack = f.DataTransferUnpackFactory(transfer=transfer)
    run = launcher.run("--once", "--kinds", "unpack")
    unpack.refresh_from_db()
    assert unpack.status == JobStatus.UNPACKED, (unpack.last_error, run.stdout, run.stderr)
    for package in topo.packages:
        assert file_sha256(topo.path(topo.cologne_buffer, f"raw/{package.name}")) == package.checksum
    assert sorted(RawDataPackageCopy.objects.filter(location=topo.cologne_buffer)
                  .values_list("raw_package__name", "checksum_verified")) == \
        sorted((p.name, p.checksum) for p in topo.packages)

    # archive both packages at once (two claim loops) into cologne's long-term archive.
    archives = [f.LongTermArchiveTransferFactory(raw_package=p, source_location=topo.cologne_buffer,
                                                 destination_location=topo.cologne_archive) for p in topo.packages]
    run = launcher.run("--once", "--kinds", "archive", "--concurrency", "2")
    assert run.stdout.count(": completed in ") == 2, run.stdout
    for archive, package in zip(archives, topo.packages, strict=True):
        archive.refresh_from_db()
        assert archive.status == JobStatus.COMPLETED, archive.last_error
        assert file_sha256(topo.path(topo.cologne_archive, f"raw/{package.name}")) == package.checksum
        assert RawDataPackageCopy.objects.filter(raw_package=package, location=topo.cologne_archive).exists()

    # every job's detailed log is a file whose path ops-db recorded.
    for model_job in (dtp, transfer, unpack, *archives):
        model_job.refresh_from_db()
        assert Path(model_job.log_path).is_file(), model_job
        assert "reporting complete" in Path(model_job.log_path).read_text()


def test_worker_stages_archived_packages_to_processing(topology, launcher):
    topo = topology
    for package in topo.packages:  # archived already: the tars sit in cologne's long-term archive
        archived = topo.path(topo.cologne_archive, f"raw/{package.name}")
        archived.parent.mkdir(parents=True, exist_ok=True)
        archived.write_bytes(topo.path(topo.ccat_buffer, f"raw/{package.name}").read_bytes())
        f.RawDataPackageCopyFactory(raw_package=package, location=topo.cologne_archive, path=f"raw/{package.name}",
                                    checksum_verified=package.checksum)
    job = f.StagingJobFactory(owner=f.scientist(), destination_location=topo.cologne_processing)
    for package in topo.packages:
        f.StagingJobPackageFactory(job=job, raw_package=package, source_location=topo.cologne_archive)

    run = launcher.run("--once", "--kinds", "stage")

    job.refresh_from_db()
    assert job.status == JobStatus.READY, (job.last_error, run.stdout, run.stderr)
    for name, files in topo.files.items():
        for relative_path, data in files.items():
            staged = topo.path(topo.cologne_processing, f"staged/{name.removesuffix('.tar')}/{relative_path}")
            assert staged.read_bytes() == data
    copies = RawDataFileCopy.objects.filter(location=topo.cologne_processing)
    assert sorted(copies.values_list("path", flat=True)) == sorted(
        f"staged/{name.removesuffix('.tar')}/{relative}" for name, files in topo.files.items() for relative in files
    )
    assert not topo.path(topo.cologne_processing, ".opsdb-incoming").exists() or \
        list(topo.path(topo.cologne_processing, ".opsdb-incoming").iterdir()) == []
    assert "reporting complete" in Path(job.log_path).read_text()


def archive_copies(topo, packages) -> None:
    """Put the packages' tars in cologne's long-term archive and record the copies."""
    for package in packages:
        archived = topo.path(topo.cologne_archive, f"raw/{package.name}")
        archived.parent.mkdir(parents=True, exist_ok=True)
        archived.write_bytes(topo.path(topo.ccat_buffer, f"raw/{package.name}").read_bytes())
        f.RawDataPackageCopyFactory(raw_package=package, location=topo.cologne_archive, path=f"raw/{package.name}",
                                    checksum_verified=package.checksum)


def test_worker_stage_reports_each_package_as_it_finishes(topology, launcher):
    topo = topology
    archive_copies(topo, topo.packages)
    flip_byte(topo.path(topo.cologne_archive, f"raw/{topo.packages[1].name}"))  # the second one is bad
    job = f.StagingJobFactory(owner=f.scientist(), destination_location=topo.cologne_processing)
    for package in topo.packages:
        f.StagingJobPackageFactory(job=job, raw_package=package, source_location=topo.cologne_archive)

    launcher.run("--once", "--kinds", "stage")

    job.refresh_from_db()
    states = dict(job.items.values_list("raw_package__name", "state"))
    assert job.status == JobStatus.FAILED
    # the first package was staged and said so (heartbeat items_done) before the second failed.
    assert states == {topo.packages[0].name: StagedPackageState.STAGED,
                      topo.packages[1].name: StagedPackageState.PENDING}


def test_worker_corrupted_archive_copy_fails_staging(topology, launcher):
    topo = topology
    package = topo.packages[0]
    archived = topo.path(topo.cologne_archive, f"raw/{package.name}")
    archived.parent.mkdir(parents=True)
    archived.write_bytes(topo.path(topo.ccat_buffer, f"raw/{package.name}").read_bytes())
    f.RawDataPackageCopyFactory(raw_package=package, location=topo.cologne_archive, path=f"raw/{package.name}")
    flip_byte(archived)
    job = f.StagingJobFactory(owner=f.scientist(), destination_location=topo.cologne_processing)
    f.StagingJobPackageFactory(job=job, raw_package=package, source_location=topo.cologne_archive)

    launcher.run("--once", "--kinds", "stage")

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "checksum mismatch" in job.last_error
    assert not RawDataFileCopy.objects.exists()
    assert not topo.path(topo.cologne_processing, "staged").exists()


def test_worker_bbcp_mapped_to_local_cp_transfers(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")

    run = launcher.run("--once", "--kinds", "transfer", "--methods", "bbcp",
                       "--method-command", "bbcp=cp {source} {destination}")

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, (transfer.last_error, run.stdout)
    assert file_sha256(topology.path(topology.cologne_buffer, dtp.archive_path)) == dtp.checksum
    assert "commands bbcp: cp {source} {destination}" in run.stdout


def test_worker_without_method_claims_no_transfer(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="s3")

    run = launcher.run("--once", "--kinds", "transfer", "--methods", "copy")

    transfer.refresh_from_db()
    assert (transfer.status, run.stdout.count(" #")) == (JobStatus.PENDING, 0)


def test_worker_corrupted_raw_package_fails_the_build_and_ends_alone(topology, launcher):
    dtp = make_bundle(topology)
    good, bad = topology.packages
    flip_byte(topology.path(topology.ccat_buffer, f"raw/{bad.name}"))

    run = launcher.run("--once", "--kinds", "package")

    dtp.refresh_from_db()
    # Bad stored data will not heal by retrying: no other attempt; the bundle is split so that
    # the good member goes on and the bad one ends alone, FAILED for an operator.
    assert dtp.status == JobStatus.CANCELLED, (run.stdout, run.stderr)
    assert "checksum mismatch" in dtp.last_error and bad.name in dtp.last_error
    assert not topology.path(topology.ccat_buffer, "bundles").exists() or \
        list(topology.path(topology.ccat_buffer, "bundles").iterdir()) == []
    assert not DataTransferPackageCopy.objects.filter(transfer_package=dtp).exists()
    (log,) = error_logs(dtp)
    assert "checksum mismatch" in Path(log.log_path).read_text()

    launcher.run("--once", "--kinds", "package")
    launcher.run("--once", "--kinds", "package")

    built = DataTransferPackage.objects.get(status=JobStatus.COMPLETED)
    failed = DataTransferPackage.objects.get(status=JobStatus.FAILED)
    assert list(built.raw_packages.all()) == [good]
    assert list(failed.raw_packages.all()) == [bad]
    assert DataTransferPackageCopy.objects.filter(transfer_package=built).exists()


def test_worker_bundle_corrupted_at_origin_fails_transfer(topology, launcher):
    dtp = build_bundle(topology, launcher)
    flip_byte(topology.path(topology.ccat_buffer, dtp.archive_path))
    transfer = make_transfer(topology, dtp)

    launcher.run("--once", "--kinds", "transfer")

    transfer.refresh_from_db()
    # The source is corrupt, not the transfer: the copy leaves service and the transfer waits for a good one.
    assert transfer.status == JobStatus.PENDING
    assert "checksum mismatch" in transfer.last_error
    assert DataTransferPackageCopy.objects.get(transfer_package=dtp, location=topology.ccat_buffer).status == (
        CopyStatus.MISMATCH)
    assert not topology.path(topology.cologne_buffer, dtp.archive_path).exists()
    assert not DataTransferPackageCopy.objects.filter(transfer_package=dtp, location=topology.cologne_buffer).exists()
    assert error_logs(transfer)[0].log_path == transfer.log_path


def test_worker_corrupting_transfer_command_fails_retryably(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")
    corrupting = "sh -c 'cp \"$0\" \"$1\" && printf x >> \"$1\"' {source} {destination}"

    run = launcher.run("--once", "--kinds", "transfer", "--methods", "bbcp", "--method-command", f"bbcp={corrupting}")

    transfer.refresh_from_db()
    # The source is fine, so a bad copy is worth another attempt: back to PENDING with backoff.
    assert (transfer.status, transfer.attempts) == (JobStatus.PENDING, 1), run.stdout
    assert transfer.next_attempt_at is not None
    assert "checksum mismatch" in transfer.last_error
    assert list(topology.path(topology.cologne_buffer, "bundles").iterdir()) == []


def test_worker_corrupted_archive_at_destination_fails_unpack_not_transfer(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp)
    launcher.run("--once", "--kinds", "transfer")
    landed = topology.path(topology.cologne_buffer, dtp.archive_path)
    flip_byte(landed, offset=512 + 100)  # inside the first member's data, after its tar header
    unpack = f.DataTransferUnpackFactory(transfer=transfer)

    launcher.run("--once", "--kinds", "unpack")

    unpack.refresh_from_db()
    transfer.refresh_from_db()
    # Found before unpacking: the archive there leaves service; the unpack waits for a good copy.
    assert (transfer.status, unpack.status) == (JobStatus.TRANSFERRED, JobStatus.PENDING)
    assert "checksum mismatch" in unpack.last_error
    assert DataTransferPackageCopy.objects.get(transfer_package=dtp, location=topology.cologne_buffer).status == (
        CopyStatus.MISMATCH)
    assert not RawDataPackageCopy.objects.filter(location=topology.cologne_buffer).exists()
    assert not topology.path(topology.cologne_buffer, f"raw/{topology.packages[0].name}").exists()


def test_worker_sigterm_mid_job_fails_it_back_to_pending(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")
    process = launcher.start("--kinds", "transfer", "--methods", "bbcp", "--grace-seconds", "0.5",
                             "--method-command", "bbcp=" + SLOW_COPY.format(seconds=30))
    wait_until(lambda: DataTransfer.objects.get(pk=transfer.pk).status == JobStatus.ACTIVE, message="claim")

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=20)

    transfer.refresh_from_db()
    assert process.returncode == 0, stderr
    assert (transfer.status, transfer.attempts) == (JobStatus.PENDING, 1), stdout
    assert "SIGTERM" in transfer.last_error
    assert transfer.lease_expires_at is None
    assert list(topology.path(topology.cologne_buffer, "bundles").iterdir()) == []


def test_worker_second_sigint_stops_the_job_at_once(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")
    process = launcher.start("--kinds", "transfer", "--methods", "bbcp", "--grace-seconds", "300",
                             "--method-command", "bbcp=" + SLOW_COPY.format(seconds=60))
    wait_until(lambda: DataTransfer.objects.get(pk=transfer.pk).status == JobStatus.ACTIVE, message="claim")

    process.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the first stops claiming and grants the grace period; the second ends it
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=20)

    transfer.refresh_from_db()
    assert (transfer.status, transfer.attempts) == (JobStatus.PENDING, 1), stdout
    assert "forced" in transfer.last_error


def test_worker_sigterm_lets_a_short_job_finish(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")
    process = launcher.start("--kinds", "transfer", "--methods", "bbcp", "--grace-seconds", "30",
                             "--method-command", "bbcp=" + SLOW_COPY.format(seconds=1))
    wait_until(lambda: DataTransfer.objects.get(pk=transfer.pk).status == JobStatus.ACTIVE, message="claim")

    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=20)

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, stdout
    assert "no more claims" in stdout


def test_worker_heartbeats_keep_a_job_longer_than_its_lease(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")

    # A 3 s lease and a 5 s copy: without heartbeats the late complete would get 409.
    run = launcher.run("--once", "--kinds", "transfer", "--methods", "bbcp", "--lease-seconds", "3",
                       "--method-command", "bbcp=" + SLOW_COPY.format(seconds=5))

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.TRANSFERRED, run.stdout
    assert (transfer.heartbeat_at - transfer.claimed_at).total_seconds() >= 2


def test_worker_lease_lost_mid_job_aborts_without_complete(topology, launcher):
    dtp = build_bundle(topology, launcher)
    transfer = make_transfer(topology, dtp, method="bbcp")
    # The copy outlasts the wait below: a worker that did not abort is still copying when the wait ends.
    process = launcher.start("--kinds", "transfer", "--methods", "bbcp", "--lease-seconds", "3", "--once",
                             "--method-command", "bbcp=" + SLOW_COPY.format(seconds=120))
    wait_until(lambda: DataTransfer.objects.get(pk=transfer.pk).status == JobStatus.ACTIVE, message="claim")

    # The lease runs out (say the worker was paused) and another worker takes the job over.
    DataTransfer.objects.filter(pk=transfer.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert job_expire(job=DataTransfer.objects.get(pk=transfer.pk))
    other = job_claim(job=DataTransfer.objects.get(pk=transfer.pk), worker="other-worker", lease_seconds=600)
    # About 2 s; the margin is for a loaded machine, where one heartbeat may wait out SQLite's busy
    # timeout or a 503's Retry-After before the next one hears the 409 (seen: 20 s was not enough).
    stdout, stderr = process.communicate(timeout=90)

    transfer.refresh_from_db()
    assert process.returncode == 0, stderr
    assert (transfer.status, transfer.lease_holder, transfer.lease_token) == (JobStatus.ACTIVE, "other-worker",
                                                                             other.lease_token)
    assert "lease-lost" in stdout
    assert list(topology.path(topology.cologne_buffer, "bundles").iterdir()) == []


def test_worker_concurrent_loops_do_each_archive_job_once(topology, launcher):
    location = topology.cologne_buffer
    jobs = []
    for n in range(6):
        data = f"payload {n}".encode() * 100
        package = f.RawDataPackageFactory(name=f"raw-many-{n}.tar", size=len(data), checksum=sha256(data))
        path = topology.path(location, f"raw/{package.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        jobs.append(LongTermArchiveTransfer.objects.create(raw_package=package, source_location=location,
                                                           destination_location=topology.cologne_archive))
    first = launcher.start("--once", "--kinds", "archive", "--concurrency", "4", "--name", "w-a")
    second = launcher.start("--once", "--kinds", "archive", "--concurrency", "4", "--name", "w-b")

    outputs = [p.communicate(timeout=60)[0] for p in (first, second)]

    assert sum(out.count(": completed in ") for out in outputs) == 6, outputs
    assert set(LongTermArchiveTransfer.objects.filter(pk__in=[j.pk for j in jobs])
               .values_list("status", flat=True)) == {JobStatus.COMPLETED}
    assert RawDataPackageCopy.objects.filter(location=topology.cologne_archive).count() == 6


def test_worker_bad_token_stops_with_message(topology, live_server, tmp_path):
    run = WorkerLauncher(live_server.url, "not-a-token", tmp_path / "logs").run("--kinds", "package")

    assert run.returncode == 0
    assert "claim refused, stopping" in run.stdout and "401" in run.stdout


def test_worker_unknown_site_stops_with_message(topology, launcher):
    run = launcher.run("--sites", "atlantis", timeout=30)

    assert run.returncode == 0
    assert "claim refused, stopping" in run.stdout and "400" in run.stdout


def test_worker_retries_outage_and_lost_complete_answer(topology, live_server, worker_token, tmp_path):
    dtp = make_bundle(topology)
    proxy = FlakyProxy(live_server.url)
    try:
        run = WorkerLauncher(proxy.url, worker_token, tmp_path / "logs").run("--once", "--kinds", "package")
    finally:
        proxy.close()

    dtp.refresh_from_db()
    complete_path = f"/api/v1/work/package/{dtp.pk}/complete/"
    assert dtp.status == JobStatus.COMPLETED, (run.stdout, run.stderr)
    assert [status for path, status in proxy.seen if path.endswith("/claim/")] == [503, 200]
    # the lost answer hid a 200; the repeat with the same lease token is a 200 that changes nothing.
    assert [status for path, status in proxy.seen if path == complete_path] == [200, 502, 200]
    assert DataTransferPackageCopy.objects.filter(transfer_package=dtp).count() == 1
    assert [log.message for log in dtp.logs.all()].count("package completed by e2e-worker") == 1


def test_worker_batch_claims_runs_and_reports_jobs_in_one_request_each(topology, launcher):
    location = topology.cologne_buffer
    jobs = []
    for n in range(7):
        data = f"small {n}".encode() * 50
        package = f.RawDataPackageFactory(name=f"raw-batch-{n}.tar", size=len(data), checksum=sha256(data))
        path = topology.path(location, f"raw/{package.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if n != 3 else data[:-1] + b"!")  # one of them is corrupt at the buffer
        jobs.append(LongTermArchiveTransfer.objects.create(raw_package=package, source_location=location,
                                                           destination_location=topology.cologne_archive))

    run = launcher.run("--once", "--kinds", "archive", "--batch", "5", "--name", "w-batch")
    again = launcher.run("--once", "--kinds", "archive", "--batch", "5", "--name", "w-batch")

    out = run.stdout + again.stdout
    assert run.returncode == 0, run.stderr
    assert "batch 5" in run.stdout
    assert out.count(": completed in ") == 6, out
    assert out.count(": failed in ") == 1, out
    states = dict(LongTermArchiveTransfer.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "status"))
    assert [states[j.pk] for j in jobs] == [JobStatus.COMPLETED] * 3 + [JobStatus.FAILED] + [JobStatus.COMPLETED] * 3
    assert RawDataPackageCopy.objects.filter(location=topology.cologne_archive).count() == 6
    logs = [(launcher.log_dir / f"archive-{j.pk}-attempt1.log").read_text() for j in jobs]
    assert ["reported complete in a batch" in log for log in logs] == [True] * 3 + [False] + [True] * 3
    assert "reported fail in a batch" in logs[3]
    claims = set(LongTermArchiveTransfer.objects.values_list("claim_request_id", flat=True))
    assert len(claims) == 2  # a batch of 5, then one of 2
