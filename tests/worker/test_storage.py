"""Storage helpers of the reference worker: checksums, atomic writes and copies, safe tar handling."""

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from worker import storage
from worker.storage import ChecksumMismatch, Expected, TarInput, UnexpectedContent, UnsafeArchive


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tar(path: Path, members: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def test_file_checksum_matches_hashlib(tmp_path):
    data = b"x" * (storage.CHUNK_SIZE + 17)
    (tmp_path / "f").write_bytes(data)

    assert storage.file_checksum(tmp_path / "f") == sha256(data)
    assert storage.file_checksum(tmp_path / "f", "md5") == hashlib.md5(data).hexdigest()


def test_file_checksum_unknown_algorithm_refused(tmp_path):
    (tmp_path / "f").write_bytes(b"a")

    with pytest.raises(storage.StorageError, match="not supported"):
        storage.file_checksum(tmp_path / "f", "crc32")


def test_verify_file_mismatch_raises(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")

    with pytest.raises(ChecksumMismatch) as excinfo:
        storage.verify_file(tmp_path / "f", sha256(b"abd"))

    assert excinfo.value.actual == sha256(b"abc")


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", ""])
def test_resolve_outside_base_refused(tmp_path, relative):
    with pytest.raises(UnsafeArchive):
        storage.resolve(str(tmp_path), relative)


def test_resolve_relative_path_joins_base(tmp_path):
    assert storage.resolve(str(tmp_path), "raw/a.tar") == tmp_path / "raw" / "a.tar"


def test_atomic_write_bytes_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "out.bin"

    storage.atomic_write_bytes(target, b"payload")

    assert target.read_bytes() == b"payload"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_atomic_target_error_keeps_old_content(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    with pytest.raises(RuntimeError), storage.atomic_target(target) as temporary:
        temporary.write_bytes(b"half-written")
        raise RuntimeError("disk full")

    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_copy_verified_copy(tmp_path):
    data = b"raw data" * 1000
    (tmp_path / "src").write_bytes(data)

    result = storage.atomic_copy(tmp_path / "src", tmp_path / "dst" / "copy", expected=sha256(data))

    assert (tmp_path / "dst" / "copy").read_bytes() == data
    assert (result.size, result.source_checksum, result.destination_checksum) == (len(data), sha256(data),
                                                                                   sha256(data))


def test_atomic_copy_bad_source_places_nothing(tmp_path):
    (tmp_path / "src").write_bytes(b"corrupted")

    with pytest.raises(ChecksumMismatch) as excinfo:
        storage.atomic_copy(tmp_path / "src", tmp_path / "dst" / "copy", expected=sha256(b"original"))

    assert excinfo.value.retryable is False
    assert list((tmp_path / "dst").iterdir()) == []


def test_build_tar_contains_members_and_reports_checksum(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"AAAA")
    (tmp_path / "b.tar").write_bytes(b"BB")
    inputs = [TarInput(tmp_path / "a.tar", "raw/a.tar", sha256(b"AAAA"), size=4),
              TarInput(tmp_path / "b.tar", "raw/b.tar", sha256(b"BB"), size=2)]

    result = storage.build_tar(tmp_path / "bundles" / "dtp.tar", inputs)

    archive = tmp_path / "bundles" / "dtp.tar"
    assert (result.size, result.checksum) == (archive.stat().st_size, sha256(archive.read_bytes()))
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["raw/a.tar", "raw/b.tar"]
        assert tar.extractfile("raw/b.tar").read() == b"BB"


def test_build_tar_corrupted_member_places_nothing(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"AAAX")

    with pytest.raises(ChecksumMismatch, match="raw/a.tar"):
        storage.build_tar(tmp_path / "bundles" / "dtp.tar", [TarInput(tmp_path / "a.tar", "raw/a.tar",
                                                                      sha256(b"AAAA"))])

    assert list((tmp_path / "bundles").iterdir()) == []


def test_safe_extract_verified_members(tmp_path):
    archive = write_tar(tmp_path / "p.tar", {"raw/a.tar": b"A", "raw/sub/b.tar": b"B"})
    out = tmp_path / "out"

    files = storage.safe_extract(archive, out, expected={"raw/a.tar": Expected(sha256(b"A")),
                                                         "raw/sub/b.tar": Expected(sha256(b"B"))})

    assert [(f.name, f.checksum) for f in files] == [("raw/a.tar", sha256(b"A")), ("raw/sub/b.tar", sha256(b"B"))]
    assert (out / "raw" / "sub" / "b.tar").read_bytes() == b"B"


@pytest.mark.parametrize("name", ["../evil", "raw/../../evil", "/tmp/evil"])
def test_safe_extract_member_outside_destination_refused(tmp_path, name):
    archive = write_tar(tmp_path / "p.tar", {"raw/a.tar": b"A", name: b"evil"})
    out = tmp_path / "deep" / "out"

    with pytest.raises(UnsafeArchive, match="outside the destination"):
        storage.safe_extract(archive, out, expected={"raw/a.tar": Expected(sha256(b"A")),
                                                     name: Expected(sha256(b"evil"))})

    assert not out.exists()
    assert not (tmp_path / "deep" / "evil").exists() and not (tmp_path / "evil").exists()


def test_safe_extract_symlink_refused(tmp_path):
    link = tarfile.TarInfo("raw/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = write_tar(tmp_path / "p.tar", {}, extra=[link])

    with pytest.raises(UnsafeArchive, match="not a regular file"):
        storage.safe_extract(archive, tmp_path / "out", expected={"raw/link": Expected("0")})

    assert not (tmp_path / "out").exists()


def test_safe_extract_corrupted_member_not_placed(tmp_path):
    archive = write_tar(tmp_path / "p.tar", {"raw/a.tar": b"A", "raw/b.tar": b"corrupt"})
    out = tmp_path / "out"

    with pytest.raises(ChecksumMismatch, match="raw/b.tar"):
        storage.safe_extract(archive, out, expected={"raw/a.tar": Expected(sha256(b"A")),
                                                     "raw/b.tar": Expected(sha256(b"B"))})

    assert sorted(p.name for p in (out / "raw").iterdir()) == ["a.tar"]


def test_safe_extract_missing_or_unexpected_member_refused(tmp_path):
    archive = write_tar(tmp_path / "p.tar", {"raw/a.tar": b"A"})

    with pytest.raises(UnexpectedContent, match="lacks expected member"):
        storage.safe_extract(archive, tmp_path / "o1", expected={"raw/a.tar": Expected(sha256(b"A")),
                                                                 "raw/b.tar": Expected(sha256(b"B"))})
    with pytest.raises(UnexpectedContent, match="not in the expected list"):
        storage.safe_extract(archive, tmp_path / "o2", expected={})
