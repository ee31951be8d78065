"""Handlers for the job kinds of docs/worker-protocol.md, on local/POSIX storage.

A handler takes the claimed job (the JSON ops-db sent) and a JobContext, does the work, and
returns the ``complete`` body (without the lease token). It raises to fail the job; it never
returns for data whose checksum it has not verified.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from worker import storage
from worker.storage import ChecksumMismatch, Expected, Partial, PartialJournal, StorageError, TarInput

Job = dict[str, Any]
Result = dict[str, Any]

# For a destination on local disk {destination} is the job's partial file (kept between attempts);
# the rsync and bbcp defaults append to what an interrupted attempt left there.
DEFAULT_COMMANDS: dict[str, str] = {
    "rsync": "rsync --partial --append-verify {source} {destination}",
    "bbcp": "bbcp -a {checkpoint_dir} -k {source} {host}:{destination}",
    "s3": "aws s3 cp --only-show-errors {source} {destination}",
}
# copy is done in-process unless a command is configured for it.
INCOMING_FOLDER = ".opsdb-incoming"
CHECKPOINT_FOLDER = ".opsdb-checkpoints"


class JobError(Exception):
    """The job cannot be done now; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


class JobAborted(Exception):
    """The job was stopped from outside: the lease was lost or the worker is shutting down."""


@dataclass
class JobContext:
    """What a handler may use while it runs: the log, progress reports, and the stop signal."""

    job: Job
    log_file: IO[str]
    commands: dict[str, str] = field(default_factory=dict)
    checksum_command: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    wake: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    lease_lost: bool = False
    bytes_done: int = 0
    items_done: list[str] = field(default_factory=list)
    journal: PartialJournal | None = None
    resumed_from: int | None = None  # bytes kept from an earlier attempt, once known (sent with heartbeats)
    kept_partials: list[Path] = field(default_factory=list)  # left for the next attempt to resume
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        """Names this job's partial files: the same for every attempt of the job."""
        return f"{self.job['kind']}-{self.job['id']}"

    def partial(self, destination: Path, *, resumable: bool = True) -> Partial:
        return Partial(destination, self.key, resumable=resumable, journal=self.journal)

    def resumed(self, kept: int, total: int | None) -> None:
        """Record how many bytes an earlier attempt left that this one keeps, and tell ops-db soon."""
        self.resumed_from = kept
        if kept:
            self.log(f"resumed at {kept} of {total if total is not None else '?'} bytes")
            self.wake.set()

    def leave(self, partial: Partial) -> None:
        """Note a partial file kept for the next attempt (the runner removes it if there is none)."""
        if partial.kept:
            self.log(f"kept {partial.path} ({partial.size} bytes) for the next attempt")
            self.kept_partials.append(partial.path)

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self.log_file.write(f"{stamp} {message}\n")
            self.log_file.flush()

    def check(self) -> None:
        """Raise JobAborted when the job must stop (call it between chunks of work)."""
        if self.cancel.is_set():
            raise JobAborted(self.cancel_reason or "job aborted")

    def abort(self, reason: str, *, lease_lost: bool = False) -> None:
        """Stop the job at its next check; ``lease_lost`` means nothing may be reported for it."""
        self.lease_lost = self.lease_lost or lease_lost
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()
            self.wake.set()

    def add_bytes(self, count: int) -> None:
        self.bytes_done += count
        self.check()

    def item_done(self, name: str) -> None:
        """Mark a package done (stage) and have the heartbeat report it right away."""
        with self._lock:
            self.items_done.append(name)
        self.wake.set()


Handler = Callable[[Job, JobContext], Result]


# -- locations -------------------------------------------------------------------------------
def local_path(location: dict[str, Any], relative: str) -> Path:
    """Where a location's relative path is on this machine; only DISK locations are local."""
    if location.get("storage_type", "DISK") != "DISK":
        raise JobError(f"location {location.get('name')} is {location.get('storage_type')} storage; "
                       "this worker handles it only through a transfer command", retryable=False)
    return storage.resolve(location["base_path"], relative)


def uri(location: dict[str, Any], relative: str) -> str:
    """A location's relative path as a path or URI string for a command template."""
    if location.get("storage_type", "DISK") == "DISK":
        return str(storage.resolve(location["base_path"], relative))
    storage.resolve("/", relative)  # the same '..' refusal as on disk
    return f"{location['base_path'].rstrip('/')}/{relative}"


def algorithm_of(record: dict[str, Any]) -> str:
    return record.get("checksum_algorithm") or "sha256"


# -- package ---------------------------------------------------------------------------------
def do_package(job: Job, ctx: JobContext) -> Result:
    """Build the transfer package tar from its members' raw package archives at the buffer."""
    package, location = job["transfer_package"], job["location"]
    algorithm = algorithm_of(package)
    inputs = [_tar_input(location, member) for member in job["members"]]
    destination = local_path(location, package["archive_path"])
    ctx.log(f"building {destination} from {len(inputs)} raw package(s)")
    for item in inputs:
        ctx.log(f"  + {item.arcname} <- {item.path} ({item.size} bytes, {item.algorithm} {item.checksum})")
    built = storage.build_tar(destination, inputs, algorithm=algorithm, progress=ctx.add_bytes, check=ctx.check,
                              key=ctx.key, journal=ctx.journal)
    ctx.log(f"built {destination}: {built.size} bytes, {algorithm} {built.checksum}")
    return {"size": built.size, "checksum": built.checksum, "checksum_algorithm": algorithm}


def _tar_input(location: dict[str, Any], member: dict[str, Any]) -> TarInput:
    path = local_path(location, member["path"])
    if not path.is_file():
        raise JobError(f"raw package {member['name']} is missing at {path}")
    return TarInput(path=path, arcname=f"raw/{member['name']}", checksum=member["checksum"],
                    algorithm=algorithm_of(member), size=member.get("size"))


# -- transfer --------------------------------------------------------------------------------
def do_transfer(job: Job, ctx: JobContext) -> Result:
    """Move a transfer package archive with the job's method, then verify it at the destination."""
    package, method = job["transfer_package"], job["method"]
    source, destination = job["source"], job["destination"]
    ctx.log(f"transfer {package['name']} by {method}: {uri(source['location'], source['path'])} -> "
            f"{uri(destination['location'], destination['path'])}")
    if not package.get("checksum"):
        raise JobError(f"transfer package {package['name']} has no checksum to verify against", retryable=False)
    if method == "copy" and "copy" not in ctx.commands:
        checksum, size = _copy_local(job, ctx)
    elif destination["location"].get("storage_type", "DISK") == "DISK":
        checksum, size = _command_to_local(job, ctx)
    else:
        checksum, size = _command_to_remote(job, ctx)
    ctx.log(f"verified at destination: {algorithm_of(package)} {checksum}")
    result: Result = {"checksum": checksum, "path": destination["path"]}
    if size is not None:
        result["size"] = size
    return result


def _copy_local(job: Job, ctx: JobContext) -> tuple[str, int]:
    package = job["transfer_package"]
    source = local_path(job["source"]["location"], job["source"]["path"])
    target = local_path(job["destination"]["location"], job["destination"]["path"])
    _require_file(source, f"transfer package {package['name']}")
    result = resumable_copy(source, target, package, ctx)
    return result.destination_checksum, result.size


def resumable_copy(source: Path, target: Path, record: dict[str, Any], ctx: JobContext) -> storage.CopyResult:
    """In-process copy into the job's partial file, resuming an earlier attempt's verified bytes."""
    partial = ctx.partial(target)
    try:
        with partial:
            result = storage.copy_into(source, partial, algorithm=algorithm_of(record), expected=record["checksum"],
                                       progress=ctx.add_bytes, log=ctx.log, on_resume=ctx.resumed)
            partial.place()
    finally:
        ctx.leave(partial)
    ctx.log(f"copied {result.written} bytes after {result.resumed_from} kept ({result.size} in all); "
            f"source and copy read back: {result.destination_checksum}")
    return result


def _command_to_local(job: Job, ctx: JobContext) -> tuple[str, int]:
    """Run the method's command into the job's partial file, then read the whole file back.

    The command gets what an interrupted attempt left (``{resume_bytes}``) after the worker has
    checked those bytes against the source (when the source is on local disk too); a resume-capable
    command (rsync --append-verify, bbcp -a) then sends only the rest.
    """
    package, method = job["transfer_package"], job["method"]
    target = local_path(job["destination"]["location"], job["destination"]["path"])
    values = _template_values(job, ctx)
    partial = ctx.partial(target)
    try:
        with partial:
            _check_partial_against_source(job, partial, ctx)
            values.update(destination=str(partial.path), partial=str(partial.path), resume_bytes=str(partial.size))
            template = _template(method, ctx)
            if "{checkpoint_dir}" in template:
                Path(values["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
            run_command(template, values, ctx, progress_path=partial.path)
            try:
                checksum = storage.verify_file(partial.path, package["checksum"], algorithm_of(package),
                                               what=f"{package['name']} at {target}")
            except ChecksumMismatch as mismatch:
                _blame_source(job, ctx, mismatch)
                ctx.log(f"discarding {partial.path}: the copy does not match; the next attempt starts from zero")
                raise
            size = partial.size
            partial.place()
    finally:
        ctx.leave(partial)
        if not partial.kept:
            remove_checkpoints(partial.path.parent, ctx.key)
    return checksum, size


def remove_checkpoints(folder: Path, key: str) -> None:
    """A resume-capable command's restart records in ``folder`` go with the partial file they describe."""
    records = folder / CHECKPOINT_FOLDER / key
    shutil.rmtree(records, ignore_errors=True)
    with contextlib.suppress(OSError):
        records.parent.rmdir()  # only when no other job's records are left in it


def _check_partial_against_source(job: Job, partial: Partial, ctx: JobContext) -> None:
    """Keep an earlier attempt's bytes only when they are the source's first bytes (source on local disk)."""
    have = partial.size
    source = job["source"]["location"]
    if have and source.get("storage_type", "DISK") == "DISK":
        kept = storage.verify_prefix(local_path(source, job["source"]["path"]), partial.path)
        if kept != have:
            ctx.log(f"partial file {partial.path} ({have} bytes) does not match the source: discarded")
            partial.discard()
            have = 0
    ctx.resumed(have, job["transfer_package"].get("size"))


def _command_to_remote(job: Job, ctx: JobContext) -> tuple[str, None]:
    package, method = job["transfer_package"], job["method"]
    values = _template_values(job, ctx)
    run_command(_template(method, ctx), values, ctx)
    if not ctx.checksum_command:
        raise JobError(f"cannot verify {values['destination']}: it is not on local disk and no "
                       "--checksum-command is configured", retryable=False)
    output = run_command(ctx.checksum_command, {**values, "path": values["destination"]}, ctx)
    actual = output.split()[0].lower() if output.split() else ""
    if actual != package["checksum"].lower():
        raise ChecksumMismatch(f"{package['name']} at {values['destination']}", package["checksum"], actual)
    return actual, None


def _blame_source(job: Job, ctx: JobContext, mismatch: ChecksumMismatch) -> None:
    """A bad copy of a bad source is not worth retrying: mark it so when the source is local and bad."""
    package = job["transfer_package"]
    if job["source"]["location"].get("storage_type", "DISK") != "DISK":
        return
    source = local_path(job["source"]["location"], job["source"]["path"])
    actual = storage.file_checksum(source, algorithm_of(package))
    ctx.log(f"copy mismatch; source {source} has {actual}")
    if actual != package["checksum"].lower():
        mismatch.retryable = False
        mismatch.what = f"source {source}"
        mismatch.actual = actual
        mismatch.args = (f"checksum mismatch for source {source}: expected {package['checksum']}, got {actual}",)


def _template(method: str, ctx: JobContext) -> str:
    template = ctx.commands.get(method) or DEFAULT_COMMANDS.get(method)
    if not template:
        raise JobError(f"no command configured for method {method!r}", retryable=False)
    return template


def _template_values(job: Job, ctx: JobContext) -> dict[str, str]:
    source, destination, package = job["source"], job["destination"], job["transfer_package"]
    target = uri(destination["location"], destination["path"])
    folder, _, name = target.rpartition("/")
    return {
        "source": uri(source["location"], source["path"]),
        "destination": target,
        # Where an interrupted attempt's data is: for a local destination the worker's partial file
        # (then also {destination}); elsewhere the command's own (bbcp -a writes the target in place).
        "partial": f"{folder}/.{name}.{ctx.key}{storage.PARTIAL_SUFFIX}",
        "resume_bytes": str(job.get("resume_bytes") or 0),
        "checkpoint_dir": f"{folder}/{CHECKPOINT_FOLDER}/{ctx.key}",
        "host": destination["location"].get("host") or "",
        "source_host": source["location"].get("host") or "",
        "destination_host": destination["location"].get("host") or "",
        "name": package["name"],
        "size": str(package.get("size") or ""),
        "checksum": package["checksum"],
    }


def render_command(template: str, values: dict[str, str]) -> list[str]:
    """Split the template like a shell would, then fill each word: no shell, so paths need no quoting."""
    try:
        return [word.format_map(values) for word in shlex.split(template)]
    except (KeyError, ValueError, IndexError) as exc:
        raise JobError(f"bad command template {template!r}: unknown or malformed placeholder {exc}",
                       retryable=False) from exc


def run_command(template: str, values: dict[str, str], ctx: JobContext, *, progress_path: Path | None = None,
                poll: float = 0.2) -> str:
    """Run a command, logging its output; stop it when the job is aborted. Returns its output."""
    argv = render_command(template, values)
    ctx.log(f"$ {shlex.join(argv)}")
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True, preexec_fn=_die_with_worker())
    except OSError as exc:
        raise JobError(f"cannot run {argv[0]}: {exc}") from exc
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    _wait(process, ctx, progress_path, poll)
    reader.join(timeout=5)
    text = "".join(output)
    if text:
        ctx.log(text.rstrip())
    if process.returncode != 0:
        raise JobError(f"{argv[0]} exited with status {process.returncode}: {text.strip()[-300:]}")
    return text


def _die_with_worker() -> Callable[[], None] | None:
    """In the child before exec: have the kernel kill the command when the worker dies (Linux).

    The command leads its own session so that stopping a job can kill its whole process group,
    which also shields it from the signals a terminal sends the worker; so if the worker itself
    is killed (SIGKILL, a crash) nothing else would stop it. PR_SET_PDEATHSIG closes that gap.
    """
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before the call: do not run orphaned
            os._exit(1)

    return arm


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_PRCTL = _load_prctl()


def _wait(process: subprocess.Popen, ctx: JobContext, progress_path: Path | None, poll: float) -> None:
    while True:
        try:
            process.wait(timeout=poll)
            return
        except subprocess.TimeoutExpired:
            pass
        if progress_path is not None and progress_path.exists():
            ctx.bytes_done = progress_path.stat().st_size
        if ctx.cancel.is_set():
            _stop(process)
            ctx.log(f"stopped the command: {ctx.cancel_reason}")
            ctx.check()


def _stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop the command and everything it started (it leads its own process group)."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise JobError(f"{what} is missing at {path}")


# -- unpack ----------------------------------------------------------------------------------
def do_unpack(job: Job, ctx: JobContext) -> Result:
    """Extract a transferred archive's raw packages at the destination, verifying each one.

    Restartable: members an interrupted attempt already placed are verified and kept.
    """
    location = job["location"]
    archive = local_path(location, job["archive_path"])
    _require_file(archive, f"transfer package {job['transfer_package']['name']}")
    expected = {member["path"]: Expected(member["checksum"], algorithm_of(member)) for member in job["members"]}
    for relative in expected:
        local_path(location, relative)  # refuse member paths outside the location up front
    ctx.log(f"unpacking {archive} into {location['base_path']} ({len(expected)} member(s))")
    extracted = storage.safe_extract(archive, Path(location["base_path"]), expected=expected,
                                     progress=ctx.add_bytes, check=ctx.check, key=ctx.key, journal=ctx.journal,
                                     on_file=lambda item: ctx.log(_member_line(item)))
    kept = sum(1 for item in extracted if item.kept)
    if kept:
        ctx.log(f"kept {kept} of {len(extracted)} member(s) an earlier attempt had extracted")
    by_name = {item.name: item for item in extracted}
    return {"members": [{"name": member["name"], "path": member["path"], "checksum": by_name[member["path"]].checksum}
                        for member in job["members"]]}


def _member_line(item: storage.ExtractedFile) -> str:
    kept = " (kept from an earlier attempt)" if item.kept else ""
    return f"  {item.name}: {item.size} bytes, {item.checksum} ok{kept}"


# -- archive ---------------------------------------------------------------------------------
def do_archive(job: Job, ctx: JobContext) -> Result:
    """Copy a raw package from the buffer into the long-term archive and verify the copy.

    Restartable: a copy already in place with the right checksum is kept; an interrupted copy resumes.
    """
    package, source, destination = job["raw_package"], job["source"], job["destination"]
    method = job.get("method") or "copy"
    if method != "copy":  # a repair from another site's archive: by the route's method
        ctx.log(f"{'repair' if job.get('repair') else 'archive'} {package['name']} by {method}")
        shim = {**job, "transfer_package": package}
        if destination["location"].get("storage_type", "DISK") == "DISK":
            checksum, _ = _command_to_local(shim, ctx)
        else:
            checksum, _ = _command_to_remote(shim, ctx)
        return {"checksum": checksum, "path": destination["path"]}
    source_path = local_path(source["location"], source["path"])
    target = local_path(destination["location"], destination["path"])
    _require_file(source_path, f"raw package {package['name']}")
    if job.get("repair"):
        ctx.log(f"repairing {target} (an audit found it bad) from {source_path}")
    if _already_there(target, package):
        ctx.log(f"{target} is already in place and verified: kept")
        return {"checksum": package["checksum"].lower(), "path": destination["path"]}
    ctx.log(f"archiving {source_path} -> {target}")
    result = resumable_copy(source_path, target, package, ctx)
    ctx.log(f"archived {result.size} bytes, verified {result.destination_checksum}")
    return {"checksum": result.destination_checksum, "path": destination["path"]}


def _already_there(target: Path, record: dict[str, Any]) -> bool:
    if not target.is_file() or (record.get("size") is not None and target.stat().st_size != record["size"]):
        return False
    return storage.file_checksum(target, algorithm_of(record)) == record["checksum"].lower()


# -- verify ----------------------------------------------------------------------------------
def do_verify(job: Job, ctx: JobContext) -> Result:
    """Re-read an archive copy and report the checksum found (or that the file is missing).

    A missing file is a result, not a failure; a missing location (its base path is not there:
    an unmounted disk?) is a failure to retry, never reported as every file missing.
    """
    package, copy = job["raw_package"], job["copy"]
    location = copy["location"]
    path = local_path(location, copy["path"])
    if not Path(location["base_path"]).is_dir():
        raise JobError(f"location {location['site']}:{location['name']} base path {location['base_path']} is not "
                       "there (not mounted?)", retryable=True)
    if not path.is_file():
        ctx.log(f"{path} is missing")
        return {"missing": True}
    ctx.log(f"{'rechecking' if job.get('recheck') else 'checking'} {path} ({algorithm_of(package)})")
    checksum = storage.file_checksum(path, algorithm_of(package), progress=ctx.add_bytes)
    expected = package["checksum"].lower()
    ctx.log(f"read {checksum}: {'matches' if checksum == expected else 'DIFFERS from ' + expected}")
    return {"checksum": checksum}


# -- stage -----------------------------------------------------------------------------------
def do_stage(job: Job, ctx: JobContext) -> Result:
    """Bring each archived raw package to the processing location, verify it, unpack and verify its files."""
    destination = job["destination"]["location"]
    staged = []
    for package in job["packages"]:
        ctx.check()
        staged.append(_stage_one(package, destination, ctx))
        ctx.item_done(package["name"])
    return {"packages": staged}


def _stage_one(package: dict[str, Any], destination: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if not package.get("source") or not package["source"].get("location"):
        raise JobError(f"raw package {package['name']} has no archive copy to stage from", retryable=False)
    source = local_path(package["source"]["location"], package["source"]["path"])
    _require_file(source, f"raw package {package['name']}")
    incoming = local_path(destination, f"{INCOMING_FOLDER}/{package['name']}")
    folder = local_path(destination, package["destination_path"])
    expected = {f["relative_path"]: Expected(f["checksum"], algorithm_of(f)) for f in package["files"]}
    started = time.monotonic()
    extracted = _already_staged(folder, package["files"])
    if extracted is not None:
        ctx.log(f"{package['name']}: every file already staged and verified: kept")
    else:
        ctx.log(f"staging {package['name']}: {source} -> {folder}")
        partial = ctx.partial(incoming)
        try:
            with partial:
                storage.copy_into(source, partial, algorithm=algorithm_of(package), expected=package["checksum"],
                                  progress=ctx.add_bytes, log=ctx.log, on_resume=ctx.resumed)
                # The package's files are extracted from the verified partial file; it is removed after.
                extracted = storage.safe_extract(partial.path, folder, expected=expected, check=ctx.check,
                                                 key=ctx.key, journal=ctx.journal)
        finally:
            ctx.leave(partial)
    ctx.log(f"staged {package['name']}: {len(extracted)} file(s) verified in {time.monotonic() - started:.1f}s")
    prefix = package["destination_path"].rstrip("/")
    return {"name": package["name"], "files": [
        {"relative_path": item.name, "path": f"{prefix}/{item.name}", "checksum": item.checksum}
        for item in extracted
    ]}


def _already_staged(folder: Path, files: list[dict[str, Any]]) -> list[storage.ExtractedFile] | None:
    """Every file of a package already at the destination with its checksum (a retried job); else None."""
    found = []
    for record in files:
        path = folder.joinpath(*storage.safe_member_name(record["relative_path"]).parts)
        if not _already_there(path, record):
            return None
        found.append(storage.ExtractedFile(record["relative_path"], path, path.stat().st_size,
                                           record["checksum"].lower(), kept=True))
    return found


# -- delete ----------------------------------------------------------------------------------
def do_delete(job: Job, ctx: JobContext) -> Result:
    """Remove the files of the job's copies, only under the location's base path; report on each copy.

    A file already gone counts as deleted (and the log says so); a file that cannot be removed is
    reported failed with its error, and the others still go. Folders left empty by a deletion are
    removed up to (not including) the base path.
    """
    location = job["location"]
    base = local_path(location, ".").resolve() if location.get("storage_type", "DISK") == "DISK" else None
    if base is None:
        raise JobError(f"location {location.get('name')} is {location.get('storage_type')} storage; this worker "
                       "deletes only on disk", retryable=False)
    if not base.is_dir():
        raise JobError(f"base path {base} of {location.get('site')}:{location.get('name')} is not a folder "
                       "(not mounted?)")
    return {"copies": [_delete_one(base, copy, ctx) for copy in job["copies"]]}


def _delete_one(base: Path, copy: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.check()
    try:
        path = _inside(base, copy["path"])
        if not path.exists() and not path.is_symlink():
            ctx.log(f"{path}: already gone, counted as deleted")
            return {"id": copy["id"], "outcome": "gone"}
        if path.is_dir() and not path.is_symlink():
            raise StorageError(f"{path} is a folder, not a file: not removed")
        path.unlink()
        ctx.log(f"deleted {path} ({copy.get('size', '?')} bytes)")
        _remove_empty_parents(path.parent, base)
        return {"id": copy["id"], "outcome": "deleted"}
    except (OSError, StorageError) as exc:
        ctx.log(f"{copy['path']}: not deleted: {exc}")
        return {"id": copy["id"], "outcome": "failed", "error": str(exc)[:2000]}


def _inside(base: Path, relative: str) -> Path:
    """``relative`` under ``base``, its folder resolved (symlinks too) and checked to stay inside ``base``."""
    path = storage.resolve(str(base), relative)
    parent = path.parent.resolve()
    if parent != base and base not in parent.parents:
        raise StorageError(f"{relative} leads outside {base} (through a link?): not removed")
    return parent / path.name


def _remove_empty_parents(folder: Path, base: Path) -> None:
    while folder != base and base in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours to remove): stop
        folder = folder.parent


HANDLERS: dict[str, Handler] = {
    "package": do_package,
    "transfer": do_transfer,
    "unpack": do_unpack,
    "archive": do_archive,
    "stage": do_stage,
    "delete": do_delete,
    "verify": do_verify,
}
KINDS = tuple(HANDLERS)


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt may succeed: bad stored data and bad configuration will not."""
    if isinstance(error, JobError | StorageError):
        return error.retryable
    return True
