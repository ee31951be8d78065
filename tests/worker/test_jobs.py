"""Job handlers on their own, with payloads shaped as docs/worker-protocol.md gives them."""

import hashlib
import io
from pathlib import Path

import pytest

from worker import jobs
from worker.storage import ChecksumMismatch


def location(base: Path, storage_type: str = "DISK", name: str = "loc") -> dict:
    base.mkdir(parents=True, exist_ok=True)
    return {"id": 1, "site": "s", "name": name, "location_type": "BUFFER", "storage_type": storage_type,
            "base_path": str(base), "host": "dtn.example.org"}


def context(job: dict, commands: dict | None = None, checksum_command: str = "") -> jobs.JobContext:
    return jobs.JobContext(job=job, log_file=io.StringIO(), commands=commands or {},
                           checksum_command=checksum_command)


def transfer_job(tmp_path: Path, data: bytes, *, method: str, destination_storage: str = "DISK") -> dict:
    source = location(tmp_path / "a", name="a")
    Path(source["base_path"], "bundles").mkdir()
    Path(source["base_path"], "bundles", "dtp.tar").write_bytes(data)
    return {"kind": "transfer", "id": 5, "lease_token": "L", "attempt": 1, "method": method, "hop": 1,
            "transfer_package": {"id": 1, "name": "dtp.tar", "size": len(data),
                                 "checksum": hashlib.sha256(data).hexdigest(), "checksum_algorithm": "sha256"},
            "source": {"location": source, "path": "bundles/dtp.tar"},
            "destination": {"location": location(tmp_path / "b", destination_storage, "b"), "path": "bundles/dtp.tar"}}


def test_transfer_to_non_local_storage_verified_by_checksum_command(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="s3", destination_storage="S3")
    ctx = context(job, {"s3": "sh -c 'mkdir -p \"$(dirname \"$1\")\" && cp \"$0\" \"$1\"' {source} {destination}"},
                  checksum_command="sha256sum {path}")

    result = jobs.do_transfer(job, ctx)

    assert result == {"checksum": hashlib.sha256(b"bundle").hexdigest(), "path": "bundles/dtp.tar"}
    assert "$ sha256sum" in ctx.log_file.getvalue()


def test_transfer_to_non_local_storage_without_verification_refused(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="s3", destination_storage="S3")
    ctx = context(job, {"s3": "true {source} {destination}"})

    with pytest.raises(jobs.JobError, match="no --checksum-command") as excinfo:
        jobs.do_transfer(job, ctx)

    assert excinfo.value.retryable is False


def test_transfer_command_failure_is_retryable_error(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="rsync")
    ctx = context(job, {"rsync": "sh -c 'echo no route to host >&2; exit 12'"})

    with pytest.raises(jobs.JobError, match="exited with status 12: no route to host") as excinfo:
        jobs.do_transfer(job, ctx)

    assert excinfo.value.retryable is True
    assert list(Path(job["destination"]["location"]["base_path"], "bundles").iterdir()) == []


def test_transfer_default_rsync_command_copies_and_verifies(tmp_path):
    job = transfer_job(tmp_path, b"x" * 10_000, method="rsync")

    result = jobs.do_transfer(job, context(job))

    landed = Path(job["destination"]["location"]["base_path"], "bundles", "dtp.tar")
    assert (result["size"], landed.read_bytes()) == (10_000, b"x" * 10_000)


def test_transfer_bad_source_through_command_not_retryable(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="bbcp")
    Path(job["source"]["location"]["base_path"], "bundles", "dtp.tar").write_bytes(b"bundlE")

    with pytest.raises(jobs.SourceCorrupt, match="source") as excinfo:
        jobs.do_transfer(job, context(job, {"bbcp": "cp {source} {destination}"}))

    assert excinfo.value.retryable is False
    assert isinstance(excinfo.value.__cause__, ChecksumMismatch)


def test_transfer_bad_source_by_copy_says_source_corrupt(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="copy")
    Path(job["source"]["location"]["base_path"], "bundles", "dtp.tar").write_bytes(b"bundlE")

    with pytest.raises(jobs.SourceCorrupt, match="source"):
        jobs.do_transfer(job, context(job))

    assert not Path(job["destination"]["location"]["base_path"], "bundles", "dtp.tar").exists()


def test_transfer_bad_copy_of_good_source_is_not_source_corrupt(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="bbcp")

    with pytest.raises(ChecksumMismatch) as excinfo:  # the command wrote other bytes: the source is fine
        jobs.do_transfer(job, context(job, {"bbcp": "sh -c 'printf x > {destination}'"}))

    assert not isinstance(excinfo.value, jobs.SourceCorrupt)
    assert excinfo.value.source is False


def test_path_climbing_out_of_location_refused(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="copy")
    job["destination"]["path"] = "../../etc/dtp.tar"

    with pytest.raises(jobs.StorageError, match="not a relative path inside"):
        jobs.do_transfer(job, context(job))


def test_aborted_job_stops_its_command(tmp_path):
    job = transfer_job(tmp_path, b"bundle", method="bbcp")
    ctx = context(job, {"bbcp": "sleep 30"})
    ctx.abort("worker got SIGTERM: grace period over")

    with pytest.raises(jobs.JobAborted, match="SIGTERM"):
        jobs.do_transfer(job, ctx)


def archive_job(tmp_path: Path, data: bytes) -> dict:
    buffer, archive = location(tmp_path / "buffer", name="buffer"), location(tmp_path / "archive", name="archive")
    Path(buffer["base_path"], "raw").mkdir()
    Path(buffer["base_path"], "raw", "raw-1.tar").write_bytes(data)
    return {"kind": "archive", "id": 9, "lease_token": "L", "attempt": 2,
            "raw_package": {"id": 1, "name": "raw-1.tar", "size": len(data),
                            "checksum": hashlib.sha256(data).hexdigest(), "checksum_algorithm": "sha256"},
            "source": {"location": buffer, "path": "raw/raw-1.tar"},
            "destination": {"location": archive, "path": "raw/raw-1.tar"}}


def test_archive_resumes_the_partial_file_of_an_earlier_attempt(tmp_path):
    data = b"0123456789" * 100_000
    job = archive_job(tmp_path, data)
    partial = Path(job["destination"]["location"]["base_path"], "raw", ".raw-1.tar.archive-9.partial")
    partial.parent.mkdir()
    partial.write_bytes(data[:700_000])
    ctx = context(job)

    result = jobs.do_archive(job, ctx)

    assert result == {"checksum": hashlib.sha256(data).hexdigest(), "path": "raw/raw-1.tar"}
    assert ctx.resumed_from == 700_000
    assert f"resumed at 700000 of {len(data)} bytes" in ctx.log_file.getvalue()
    assert "copied 300000 bytes after 700000 kept" in ctx.log_file.getvalue()
    assert [p.name for p in partial.parent.iterdir()] == ["raw-1.tar"]


def test_archive_already_in_place_and_verified_is_not_copied_again(tmp_path):
    data = b"archived" * 1000
    job = archive_job(tmp_path, data)
    target = Path(job["destination"]["location"]["base_path"], "raw", "raw-1.tar")
    target.parent.mkdir()
    target.write_bytes(data)
    ctx = context(job)

    result = jobs.do_archive(job, ctx)

    assert result["checksum"] == hashlib.sha256(data).hexdigest()
    assert ctx.bytes_done == 0
    assert "already in place and verified: kept" in ctx.log_file.getvalue()


def test_aborted_copy_keeps_its_partial_file_for_the_next_attempt(tmp_path):
    job = transfer_job(tmp_path, b"x" * 9_000_000, method="copy")
    ctx = context(job)
    written = []

    def abort_after_first_chunk(count: int) -> None:
        written.append(count)
        ctx.abort("worker got SIGTERM")

    ctx.add_bytes = lambda count: (abort_after_first_chunk(count), ctx.check())

    with pytest.raises(jobs.JobAborted):
        jobs.do_transfer(job, ctx)

    partial = Path(job["destination"]["location"]["base_path"], "bundles", ".dtp.tar.transfer-5.partial")
    assert partial.stat().st_size == written[0] == jobs.storage.CHUNK_SIZE
    assert ctx.kept_partials == [partial]
