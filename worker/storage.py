"""Local/POSIX storage helpers: checksums, atomic copies and writes, partial files, safe tar handling.

Nothing here knows about ops-db; the job handlers in ``worker.jobs`` combine these helpers.
Every file a worker places is written to a partial file in the target folder, flushed to disk
and renamed, so a reader never sees half a file under its final name. A partial file's name is
fixed per job and destination (not per attempt), so the next attempt of the same job finds it:
a resumable copy appends to it after checking its bytes against the source, and anything else
overwrites it. While an attempt uses a partial file it holds an exclusive lock on it, and a
journal (one small record per partial file) lets the worker find and remove leftovers later.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

CHUNK_SIZE = 4 * 1024 * 1024
PARTIAL_SUFFIX = ".partial"
SUPPORTED_ALGORITHMS = ("sha256", "md5")

Progress = Callable[[int], None]


class StorageError(Exception):
    """A storage operation could not be done; ``retryable`` says whether trying again may help."""

    retryable = True


class ChecksumMismatch(StorageError):
    """Data read back does not have the checksum the catalogue records."""

    def __init__(self, what: str, expected: str, actual: str, *, retryable: bool = True, source: bool = False):
        self.what, self.expected, self.actual = what, expected, actual
        self.retryable = retryable
        self.source = source  # the data read (not the copy written) is what differs
        super().__init__(f"checksum mismatch for {what}: expected {expected}, got {actual}")


class UnsafeArchive(StorageError):
    """An archive member would land outside the destination, or is not a plain file or folder."""

    retryable = False


class UnexpectedContent(StorageError):
    """An archive lacks a member it should have, or has one it should not."""

    retryable = False


def new_hasher(algorithm: str):
    """A hashlib object for a protocol checksum algorithm; StorageError for one this worker lacks."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise StorageError(f"checksum algorithm {algorithm!r} is not supported by this worker "
                           f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})")
    return hashlib.new(algorithm)


def file_checksum(path: Path | str, algorithm: str = "sha256", *, progress: Progress | None = None) -> str:
    """Hex digest of a file's content, read in chunks."""
    hasher = new_hasher(algorithm)
    with open(path, "rb") as source:
        for chunk in _chunks(source):
            hasher.update(chunk)
            if progress:
                progress(len(chunk))
    return hasher.hexdigest()


def verify_file(path: Path | str, expected: str, algorithm: str = "sha256", *, what: str = "",
                retryable: bool = True, progress: Progress | None = None) -> str:
    """Return the file's checksum; ChecksumMismatch when it differs from ``expected``."""
    actual = file_checksum(path, algorithm, progress=progress)
    if actual != expected.lower():
        raise ChecksumMismatch(what or str(path), expected, actual, retryable=retryable)
    return actual


def resolve(base_path: str, relative: str) -> Path:
    """``relative`` joined under ``base_path``; refused when it is absolute or climbs out with '..'."""
    parts = PurePosixPath(relative).parts
    if not relative or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise UnsafeArchive(f"path {relative!r} is not a relative path inside {base_path}")
    return Path(base_path, *parts)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def partial_path(destination: Path, key: str) -> Path:
    """The partial file of ``destination`` for the job ``key`` (e.g. ``transfer-12``): the same every attempt."""
    return destination.with_name(f".{destination.name}.{key}{PARTIAL_SUFFIX}")


class PartialBusy(StorageError):
    """Another attempt (another worker thread or process) is writing this partial file now."""


class PartialJournal:
    """One JSON record per partial file a worker may leave behind: which job, where, resumable or not.

    Written before the partial file is created and removed after it is gone, so a worker killed
    with SIGKILL still knows at its next start which files it left.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _record_path(self, path: Path) -> Path:
        return self.folder / f"{hashlib.sha1(str(path).encode()).hexdigest()}.json"

    def record(self, path: Path, *, key: str, resumable: bool) -> None:
        entry = {"path": str(path), "key": key, "resumable": resumable, "recorded_at": time.time()}
        atomic_write_bytes(self._record_path(path), json.dumps(entry).encode(), key="journal")

    def forget(self, path: Path) -> None:
        self._record_path(path).unlink(missing_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        """Every record (unreadable ones are dropped: they name no file)."""
        found = []
        for record in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                entry = json.loads(record.read_text())
                found.append({"path": str(entry["path"]), "key": str(entry["key"]),
                              "resumable": bool(entry["resumable"]), "recorded_at": float(entry["recorded_at"])})
            except (OSError, ValueError, KeyError, TypeError):
                record.unlink(missing_ok=True)
        return found


class Partial:
    """A job's partial file for one destination, locked while an attempt writes it.

    On leaving the ``with`` block the file is renamed onto the destination when ``place()`` was
    called; otherwise it is kept for the next attempt only when it is resumable, not empty, and the
    attempt ended with a retryable error other than a checksum mismatch (``keep=False`` forces its
    removal); in every other case it is removed.
    """

    def __init__(self, destination: Path, key: str, *, resumable: bool = True,
                 journal: PartialJournal | None = None):
        self.destination, self.key, self.resumable, self.journal = destination, key, resumable, journal
        self.path = partial_path(destination, key)
        self.keep = True
        self.kept = False
        self._placed = False
        self._fd: int | None = None

    def __enter__(self) -> Partial:
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        if self.journal is not None:
            self.journal.record(self.path, key=self.key, resumable=self.resumable)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PartialBusy(f"{self.path} is being written by another attempt") from None
        self._fd = fd
        if not self.resumable:
            os.ftruncate(fd, 0)
        return self

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def discard(self) -> None:
        """Start over: the partial file is emptied (it stays locked by this attempt)."""
        with open(self.path, "r+b") as stream:
            stream.truncate(0)

    def place(self) -> None:
        """Flush the partial file to disk and rename it onto the destination."""
        _fsync_path(self.path)
        os.replace(self.path, self.destination)
        _fsync_path(self.destination.parent)
        self._placed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            keep = (not self._placed and self.resumable and self.keep and exc is not None
                    and getattr(exc, "retryable", True) and not isinstance(exc, ChecksumMismatch)
                    and self.size > 0)
            if not keep and not self._placed:
                self.path.unlink(missing_ok=True)
            self.kept = keep
        finally:
            if self._fd is not None:
                os.close(self._fd)  # releases the lock
                self._fd = None
            if not self.kept and self.journal is not None:
                self.journal.forget(self.path)


def remove_partial(path: Path | str) -> bool:
    """Remove a partial file nobody is writing; False (nothing removed) when an attempt holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        Path(path).unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_target(destination: Path, *, key: str = "tmp", journal: PartialJournal | None = None) -> Iterator[Path]:
    """A (non-resumable) partial path next to ``destination``, renamed onto it when the block succeeds.

    On an exception the partial file is removed and ``destination`` is left untouched.
    """
    with Partial(destination, key, resumable=False, journal=journal) as partial:
        yield partial.path
        partial.place()


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(destination: Path, data: bytes, *, key: str = "tmp") -> None:
    """Write ``data`` to ``destination`` atomically."""
    with atomic_target(destination, key=key) as temporary:
        temporary.write_bytes(data)


class HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, stream: BinaryIO, algorithm: str, progress: Progress | None = None):
        self._stream, self.hasher, self.size, self._progress = stream, new_hasher(algorithm), 0, progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hasher.update(data)
        self.size += len(data)
        if self._progress and data:
            self._progress(len(data))
        return data

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


class HashingWriter:
    """A write-only stream that hashes and counts what passes through it (tarfile's output)."""

    def __init__(self, stream: BinaryIO, algorithm: str):
        self._stream, self.hasher, self.size = stream, new_hasher(algorithm), 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._stream.write(data)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


@dataclass(frozen=True)
class CopyResult:
    size: int
    source_checksum: str
    destination_checksum: str
    resumed_from: int = 0  # bytes of an earlier attempt's partial file kept (verified against the source)
    written: int = 0  # bytes this attempt wrote


def atomic_copy(source: Path, destination: Path, *, algorithm: str = "sha256", expected: str | None = None,
                progress: Progress | None = None, key: str = "tmp", journal: PartialJournal | None = None,
                resumable: bool = False, log: Callable[[str], None] | None = None) -> CopyResult:
    """Copy ``source`` to ``destination`` atomically, hashing the source as it is read and then
    reading the written copy back; ChecksumMismatch (nothing placed) when either differs from ``expected``.

    A bad source is not retryable (the stored data itself is wrong); a bad copy is. With
    ``resumable`` the partial file of an interrupted earlier attempt (same ``key``) is verified
    against the source's first bytes and appended to (see ``copy_into``).
    """
    with Partial(destination, key, resumable=resumable, journal=journal) as partial:
        result = copy_into(source, partial, algorithm=algorithm, expected=expected, progress=progress, log=log)
        partial.place()
    return result


def copy_into(source: Path, partial: Partial, *, algorithm: str = "sha256", expected: str | None = None,
              progress: Progress | None = None, log: Callable[[str], None] | None = None,
              on_resume: Callable[[int, int], None] | None = None) -> CopyResult:
    """Copy ``source`` into ``partial``, resuming after the bytes already there when they are the source's.

    Resuming is verified, never trusted: the bytes already in the partial file are compared with
    the source's first bytes (and hashed on the way, as the source is); at the first difference
    the partial file is emptied and the copy starts from zero. The whole copy is read back and
    compared with the source's checksum at the end; ChecksumMismatch when either differs.
    ``progress`` counts the bytes now in the partial file (kept ones included); ``on_resume`` gets
    the bytes kept and the source's size once they are verified.
    """
    hasher = new_hasher(algorithm)
    with open(source, "rb") as src, open(partial.path, "r+b") as dst:
        source_size = os.fstat(src.fileno()).st_size
        resumed = _verified_prefix(src, dst, hasher, partial.size, source_size)
        if resumed != partial.size and log:
            log(f"partial file {partial.path} ({partial.size} bytes) does not match the source's first "
                f"bytes after {resumed} bytes: discarded, copying from the start")
        if resumed == 0:
            hasher = new_hasher(algorithm)
            src.seek(0)
        elif log:
            log(f"resuming {partial.path} after {resumed} verified bytes")
        dst.seek(resumed)
        dst.truncate(resumed)
        if on_resume:
            on_resume(resumed, source_size)
        if progress and resumed:
            progress(resumed)
        written = 0
        while chunk := src.read(CHUNK_SIZE):
            hasher.update(chunk)
            dst.write(chunk)
            written += len(chunk)
            if progress:
                progress(len(chunk))
        dst.flush()
    source_checksum = hasher.hexdigest()
    if expected is not None and source_checksum != expected.lower():
        raise ChecksumMismatch(f"source {source}", expected, source_checksum, retryable=False, source=True)
    destination_checksum = file_checksum(partial.path, algorithm)
    if destination_checksum != source_checksum:
        raise ChecksumMismatch(f"copy at {partial.destination}", source_checksum, destination_checksum)
    return CopyResult(resumed + written, source_checksum, destination_checksum, resumed, written)


def _verified_prefix(src: BinaryIO, dst: BinaryIO, hasher, have: int, source_size: int) -> int:
    """How many of the ``have`` bytes in ``dst`` can be kept: all when they equal the source's, else 0.

    Both streams are left positioned after the compared bytes; ``hasher`` has hashed the source's.
    """
    if have == 0 or have > source_size:
        return 0
    left = have
    while left:
        size = min(CHUNK_SIZE, left)
        expected, actual = src.read(size), dst.read(size)
        if expected != actual:
            return 0
        hasher.update(expected)
        left -= size
    return have


def verify_prefix(source: Path, partial: Path) -> int:
    """How many bytes of ``partial`` may be kept for a resumed copy of ``source`` (0: start over)."""
    if not partial.exists():
        return 0
    with open(source, "rb") as src, open(partial, "rb") as dst:
        return _verified_prefix(src, dst, new_hasher("sha256"), partial.stat().st_size,
                                os.fstat(src.fileno()).st_size)


@dataclass(frozen=True)
class TarInput:
    """A file to put in a tar: where it is, its name inside the tar, and the checksum it must have."""

    path: Path
    arcname: str
    checksum: str
    algorithm: str = "sha256"
    size: int | None = None


@dataclass(frozen=True)
class TarResult:
    size: int
    checksum: str


def build_tar(destination: Path, inputs: list[TarInput], *, algorithm: str = "sha256",
              progress: Progress | None = None, check: Callable[[], None] | None = None, key: str = "tmp",
              journal: PartialJournal | None = None) -> TarResult:
    """Write an uncompressed tar of ``inputs`` to ``destination`` atomically, in one pass.

    Each input is hashed while it is copied in; the first one whose checksum (or size) differs
    from what it must have aborts the build (ChecksumMismatch, not retryable) and nothing is placed.
    Returns the archive's size and checksum, hashed as it was written.
    """
    with atomic_target(destination, key=key, journal=journal) as temporary, open(temporary, "wb") as raw:
        writer = HashingWriter(raw, algorithm)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for item in inputs:
                if check:
                    check()
                _add_verified(tar, item, progress)
        raw.flush()
    return TarResult(writer.size, writer.hexdigest())


def _add_verified(tar: tarfile.TarFile, item: TarInput, progress: Progress | None) -> None:
    safe_member_name(item.arcname)
    stat = item.path.stat()
    if item.size is not None and stat.st_size != item.size:
        raise ChecksumMismatch(f"{item.arcname} (size)", str(item.size), str(stat.st_size), retryable=False)
    info = tarfile.TarInfo(item.arcname)
    info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
    with open(item.path, "rb") as source:
        reader = HashingReader(source, item.algorithm, progress)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    if reader.hexdigest() != item.checksum.lower():
        raise ChecksumMismatch(f"{item.arcname} at {item.path}", item.checksum, reader.hexdigest(), retryable=False)


def safe_member_name(name: str) -> PurePosixPath:
    """The member name as a relative path; UnsafeArchive for absolute names and '..' components."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or name.startswith("\\") or "\x00" in name:
        raise UnsafeArchive(f"archive member {name!r} would land outside the destination")
    return path


@dataclass(frozen=True)
class Expected:
    checksum: str
    algorithm: str = "sha256"


@dataclass(frozen=True)
class ExtractedFile:
    name: str
    path: Path
    size: int
    checksum: str
    kept: bool = False  # already in place and verified: not extracted again


def safe_extract(archive: Path, destination: Path, *, expected: Mapping[str, Expected],
                 progress: Progress | None = None, check: Callable[[], None] | None = None,
                 on_file: Callable[[ExtractedFile], None] | None = None, key: str = "tmp",
                 journal: PartialJournal | None = None) -> list[ExtractedFile]:
    """Extract the regular files of ``archive`` under ``destination``, verifying each against ``expected``.

    Every member is vetted before anything is written: names outside the destination, links,
    devices, members not in ``expected`` and missing expected members are refused. Each file is
    written to a partial file, hashed on the way, and renamed into place only when its checksum
    matches; a mismatch raises ChecksumMismatch and leaves the bad file out. A member already in
    place with the right size and checksum (an interrupted earlier attempt extracted it) is
    verified and kept, not extracted again (``ExtractedFile.kept``).
    """
    with tarfile.open(archive, mode="r:") as tar:
        members = _vetted_members(tar, expected)
        extracted = []
        for member in members:
            if check:
                check()
            target = destination.joinpath(*safe_member_name(member.name).parts)
            item = _already_extracted(member, target, expected[member.name], progress)
            if item is None:
                item = _extract_one(tar, member, target, expected[member.name], progress, key, journal)
            extracted.append(item)
            if on_file:
                on_file(item)
    return extracted


def _vetted_members(tar: tarfile.TarFile, expected: Mapping[str, Expected]) -> list[tarfile.TarInfo]:
    files = []
    for member in tar.getmembers():
        safe_member_name(member.name)
        if member.isdir():
            continue
        if not member.isreg():
            raise UnsafeArchive(f"archive member {member.name!r} is not a regular file (links are refused)")
        if member.name not in expected:
            raise UnexpectedContent(f"archive member {member.name!r} is not in the expected list")
        files.append(member)
    missing = sorted(set(expected) - {member.name for member in files})
    if missing:
        raise UnexpectedContent(f"archive lacks expected member(s): {', '.join(missing)}")
    return files


def _already_extracted(member: tarfile.TarInfo, target: Path, want: Expected,
                       progress: Progress | None) -> ExtractedFile | None:
    """The member's file when it is already in place, whole and verified; None when it must be extracted."""
    if not target.is_file() or target.is_symlink() or target.stat().st_size != member.size:
        return None
    actual = file_checksum(target, want.algorithm)
    if actual != want.checksum.lower():
        return None
    if progress:
        progress(member.size)
    return ExtractedFile(member.name, target, member.size, actual, kept=True)


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, want: Expected,
                 progress: Progress | None, key: str, journal: PartialJournal | None) -> ExtractedFile:
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has data
    with atomic_target(target, key=key, journal=journal) as temporary, open(temporary, "wb") as out:
        reader = HashingReader(source, want.algorithm, progress)
        shutil.copyfileobj(reader, out, CHUNK_SIZE)
        out.flush()
        if reader.hexdigest() != want.checksum.lower():
            # The archive was verified when it arrived; a bad member means bad data, not bad luck.
            raise ChecksumMismatch(f"archive member {member.name}", want.checksum, reader.hexdigest(),
                                   retryable=False)
    return ExtractedFile(member.name, target, reader.size, reader.hexdigest())
