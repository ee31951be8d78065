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


# -- partial files and resumed copies ---------------------------------------------------------
class Interrupted(Exception):
    """An attempt stopped from outside (retryable), like JobAborted."""


def test_partial_path_is_the_same_for_every_attempt_of_a_job(tmp_path):
    target = tmp_path / "bundles" / "dtp.tar"

    assert storage.partial_path(target, "transfer-7") == tmp_path / "bundles" / ".dtp.tar.transfer-7.partial"
    assert storage.Partial(target, "transfer-7").path == storage.Partial(target, "transfer-7").path


def test_copy_into_resumes_after_the_verified_bytes_of_a_partial_file(tmp_path):
    data = bytes(range(256)) * 40_000  # 10 MB: more than two chunks
    (tmp_path / "src").write_bytes(data)
    target = tmp_path / "dst" / "copy"
    target.parent.mkdir()
    storage.partial_path(target, "transfer-1").write_bytes(data[:6_000_000])
    resumes = []

    with storage.Partial(target, "transfer-1") as partial:
        result = storage.copy_into(tmp_path / "src", partial, expected=sha256(data),
                                   on_resume=lambda kept, total: resumes.append((kept, total)))
        partial.place()

    assert (result.resumed_from, result.written, result.size) == (6_000_000, len(data) - 6_000_000, len(data))
    assert resumes == [(6_000_000, len(data))]
    assert target.read_bytes() == data
    assert result.destination_checksum == sha256(data)
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy"]


def test_copy_into_corrupted_partial_file_is_discarded_and_copied_whole(tmp_path):
    data = bytes(range(256)) * 40_000
    (tmp_path / "src").write_bytes(data)
    target = tmp_path / "copy"
    leftover = bytearray(data[:6_000_000])
    leftover[3_000_000] ^= 0xFF  # corrupted in the middle
    storage.partial_path(target, "transfer-1").write_bytes(bytes(leftover))
    lines = []

    with storage.Partial(target, "transfer-1") as partial:
        result = storage.copy_into(tmp_path / "src", partial, expected=sha256(data), log=lines.append)
        partial.place()

    assert (result.resumed_from, result.written) == (0, len(data))
    assert target.read_bytes() == data
    assert "does not match the source's first bytes" in lines[0]


def test_copy_into_partial_longer_than_the_source_is_discarded(tmp_path):
    (tmp_path / "src").write_bytes(b"short")
    target = tmp_path / "copy"
    storage.partial_path(target, "k").write_bytes(b"short and then some")

    with storage.Partial(target, "k") as partial:
        result = storage.copy_into(tmp_path / "src", partial, expected=sha256(b"short"))
        partial.place()

    assert (result.resumed_from, target.read_bytes()) == (0, b"short")


def test_partial_kept_after_a_retryable_interruption(tmp_path):
    target = tmp_path / "copy"

    with pytest.raises(Interrupted), storage.Partial(target, "transfer-1") as partial:
        partial.path.write_bytes(b"first half")
        raise Interrupted

    assert (partial.kept, partial.path.read_bytes()) == (True, b"first half")
    assert not target.exists()


@pytest.mark.parametrize("error", [ChecksumMismatch("x", "a", "b"), UnsafeArchive("bad")])
def test_partial_removed_after_a_mismatch_or_a_final_error(tmp_path, error):
    target = tmp_path / "copy"

    with pytest.raises(type(error)), storage.Partial(target, "transfer-1") as partial:
        partial.path.write_bytes(b"first half")
        raise error

    assert (partial.kept, list(tmp_path.iterdir())) == (False, [])


def test_partial_empty_one_is_not_kept(tmp_path):
    with pytest.raises(Interrupted), storage.Partial(tmp_path / "copy", "transfer-1") as partial:
        raise Interrupted

    assert (partial.kept, list(tmp_path.iterdir())) == (False, [])


def test_partial_not_resumable_is_removed_after_an_interruption(tmp_path):
    with pytest.raises(Interrupted), storage.Partial(tmp_path / "copy", "package-1", resumable=False) as partial:
        partial.path.write_bytes(b"half a tar")
        raise Interrupted

    assert list(tmp_path.iterdir()) == []


def test_partial_in_use_by_another_attempt_is_refused_and_not_removed(tmp_path):
    target = tmp_path / "copy"

    with storage.Partial(target, "transfer-1") as first:
        first.path.write_bytes(b"being written")
        with pytest.raises(storage.PartialBusy), storage.Partial(target, "transfer-1"):
            pass
        assert storage.remove_partial(first.path) is False
        assert first.path.read_bytes() == b"being written"

    assert storage.remove_partial(first.path) is True
    assert not first.path.exists()


def test_partial_journal_records_a_file_until_it_is_placed_or_removed(tmp_path):
    journal = storage.PartialJournal(tmp_path / "state")
    target = tmp_path / "data" / "copy"

    with pytest.raises(Interrupted), storage.Partial(target, "transfer-3", journal=journal) as partial:
        recorded_while_open = journal.entries()
        partial.path.write_bytes(b"half")
        raise Interrupted
    kept = journal.entries()
    with storage.Partial(target, "transfer-3", journal=journal) as partial:
        partial.place()

    assert [(e["path"], e["key"], e["resumable"]) for e in recorded_while_open] == [
        (str(partial.path), "transfer-3", True)]
    assert [e["path"] for e in kept] == [str(partial.path)]
    assert journal.entries() == []
    assert target.read_bytes() == b"half"


def test_safe_extract_keeps_members_an_earlier_attempt_extracted(tmp_path):
    members = {f"raw/m{n}.tar": bytes([n]) * 1000 for n in range(5)}
    archive = write_tar(tmp_path / "p.tar", members)
    out = tmp_path / "out"
    expected = {name: Expected(sha256(data)) for name, data in members.items()}
    (out / "raw").mkdir(parents=True)
    for name in ("raw/m0.tar", "raw/m1.tar", "raw/m2.tar"):
        (out / name).write_bytes(members[name])
    (out / "raw/m2.tar").write_bytes(b"\0" * 1000)  # same size, wrong bytes: extracted again

    files = storage.safe_extract(archive, out, expected=expected)

    assert [(f.name, f.kept) for f in files] == [("raw/m0.tar", True), ("raw/m1.tar", True), ("raw/m2.tar", False),
                                                 ("raw/m3.tar", False), ("raw/m4.tar", False)]
    assert all((out / name).read_bytes() == data for name, data in members.items())
