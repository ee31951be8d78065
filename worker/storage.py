"""Local/POSIX storage helpers: checksums, atomic copies and writes, and safe tar handling.

Nothing here knows about ops-db; the job handlers in ``worker.jobs`` combine these helpers.
Every file a worker places is written to a temporary name in the target folder, flushed to disk
and renamed, so a reader never sees half a file under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

CHUNK_SIZE = 4 * 1024 * 1024
SUPPORTED_ALGORITHMS = ("sha256", "md5")

Progress = Callable[[int], None]


class StorageError(Exception):
    """A storage operation could not be done; ``retryable`` says whether trying again may help."""

    retryable = True


class ChecksumMismatch(StorageError):
    """Data read back does not have the checksum the catalogue records."""

    def __init__(self, what: str, expected: str, actual: str, *, retryable: bool = True):
        self.what, self.expected, self.actual = what, expected, actual
        self.retryable = retryable
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


@contextlib.contextmanager
def atomic_target(destination: Path) -> Iterator[Path]:
    """A temporary path next to ``destination``, renamed onto it when the block succeeds.

    On an exception the temporary file is removed and ``destination`` is left untouched.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        _fsync_path(temporary)
        os.replace(temporary, destination)
        _fsync_path(destination.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    """Write ``data`` to ``destination`` atomically."""
    with atomic_target(destination) as temporary:
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


def atomic_copy(source: Path, destination: Path, *, algorithm: str = "sha256", expected: str | None = None,
                progress: Progress | None = None) -> CopyResult:
    """Copy ``source`` to ``destination`` atomically, hashing the source as it is read and then
    reading the written copy back; ChecksumMismatch (nothing placed) when either differs from ``expected``.

    A bad source is not retryable (the stored data itself is wrong); a bad copy is.
    """
    with atomic_target(destination) as temporary:
        with open(source, "rb") as src, open(temporary, "wb") as dst:
            reader = HashingReader(src, algorithm, progress)
            shutil.copyfileobj(reader, dst, CHUNK_SIZE)
        source_checksum = reader.hexdigest()
        if expected is not None and source_checksum != expected.lower():
            raise ChecksumMismatch(f"source {source}", expected, source_checksum, retryable=False)
        destination_checksum = file_checksum(temporary, algorithm)
        if destination_checksum != source_checksum:
            raise ChecksumMismatch(f"copy at {destination}", source_checksum, destination_checksum)
    return CopyResult(reader.size, source_checksum, destination_checksum)


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
              progress: Progress | None = None, check: Callable[[], None] | None = None) -> TarResult:
    """Write an uncompressed tar of ``inputs`` to ``destination`` atomically, in one pass.

    Each input is hashed while it is copied in; the first one whose checksum (or size) differs
    from what it must have aborts the build (ChecksumMismatch, not retryable) and nothing is placed.
    Returns the archive's size and checksum, hashed as it was written.
    """
    with atomic_target(destination) as temporary, open(temporary, "wb") as raw:
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


def safe_extract(archive: Path, destination: Path, *, expected: Mapping[str, Expected],
                 progress: Progress | None = None, check: Callable[[], None] | None = None,
                 on_file: Callable[[ExtractedFile], None] | None = None) -> list[ExtractedFile]:
    """Extract the regular files of ``archive`` under ``destination``, verifying each against ``expected``.

    Every member is vetted before anything is written: names outside the destination, links,
    devices, members not in ``expected`` and missing expected members are refused. Each file is
    written to a temporary name, hashed on the way, and renamed into place only when its checksum
    matches; a mismatch raises ChecksumMismatch and leaves the bad file out.
    """
    with tarfile.open(archive, mode="r:") as tar:
        members = _vetted_members(tar, expected)
        extracted = []
        for member in members:
            if check:
                check()
            item = _extract_one(tar, member, destination, expected[member.name], progress)
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


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path, want: Expected,
                 progress: Progress | None) -> ExtractedFile:
    target = destination.joinpath(*safe_member_name(member.name).parts)
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has data
    with atomic_target(target) as temporary, open(temporary, "wb") as out:
        reader = HashingReader(source, want.algorithm, progress)
        shutil.copyfileobj(reader, out, CHUNK_SIZE)
        out.flush()
        if reader.hexdigest() != want.checksum.lower():
            # The archive was verified when it arrived; a bad member means bad data, not bad luck.
            raise ChecksumMismatch(f"archive member {member.name}", want.checksum, reader.hexdigest(),
                                   retryable=False)
    return ExtractedFile(member.name, target, reader.size, reader.hexdigest())
