"""Fixity audits end to end: the reference worker re-reads real archive files, a corrupted copy is
found, taken out of service, checked once more, and repaired from another site's verified copy.

The scheduler's fixity pass runs between worker runs, as ``run_scheduler`` would.
"""

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.custody import raw_package_custody
from opsdb.models import RawDataPackageCopy
from staging.choices import FixityOutcome
from staging.fixity import plan_fixity
from staging.models import FixityCheck, LongTermArchiveTransfer
from tests import factories as f
from tests.worker.conftest import WorkerLauncher, file_sha256, flip_byte

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def archive_at(location, packages, source) -> dict:
    """The packages' tars in ``location`` (copied from ``source``), recorded verified 400 days ago."""
    copies = {}
    for package in packages:
        target = Path(location.base_path, "raw", package.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(source.base_path, "raw", package.name).read_bytes())
        copies[package.name] = f.RawDataPackageCopyFactory(
            raw_package=package, location=location, path=f"raw/{package.name}", checksum_verified=package.checksum,
            verified_at=timezone.now() - timedelta(days=400))
    return copies


def run_all(launcher, kind: str, model, **filters) -> None:
    """Run the worker until no job of ``kind`` is pending (one job per run, as a loop would)."""
    for _ in range(10):
        if not model.objects.filter(status=JobStatus.PENDING, **filters).exists():
            return
        run = launcher.run("--once", "--kinds", kind)
        assert run.returncode == 0, run.stderr
    raise AssertionError(f"{kind} jobs still pending")


def cornell_worker(launcher) -> WorkerLauncher:
    out = io.StringIO()
    call_command("create_worker", "cornell-worker", "--site", "cornell", stdout=out, stderr=io.StringIO())
    return WorkerLauncher(launcher.url, out.getvalue().strip(), launcher.log_dir)


def test_corrupted_archive_copy_is_found_and_repaired_from_another_sites_archive(topology, launcher):
    topo = topology
    cornell = f.SiteFactory(name="cornell")
    cornell_archive = f.DataLocationFactory(site=cornell, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE,
                                            base_path=str(topo.root / "cornell" / "archive"), host="")
    f.RouteFactory(origin_site=cornell, destination_site=topo.cologne, method="copy")
    cologne = archive_at(topo.cologne_archive, topo.packages, topo.ccat_buffer)
    archive_at(cornell_archive, topo.packages, topo.ccat_buffer)
    bad, good = topo.packages
    bad_file = Path(topo.cologne_archive.base_path, "raw", bad.name)
    flip_byte(bad_file)

    # audit: every archive copy is re-read; the corrupted one is found and taken out of service.
    plan_fixity(now=timezone.now())
    assert FixityCheck.objects.count() == 4
    run_all(launcher, "verify", FixityCheck, location__site=topo.cologne)  # this worker serves ccat and cologne
    bad_copy = RawDataPackageCopy.objects.get(pk=cologne[bad.name].pk)
    assert bad_copy.status == CopyStatus.MISMATCH
    assert FixityCheck.objects.get(copy=bad_copy).checksum_found == file_sha256(bad_file)
    assert raw_package_custody(bad).safe_sites == ["cornell"]
    good_copy = RawDataPackageCopy.objects.get(pk=cologne[good.name].pk)
    assert (good_copy.status, good_copy.verified_at > timezone.now() - timedelta(minutes=5)) == (
        CopyStatus.PRESENT, True)

    # checked once more: still bad.
    plan_fixity(now=timezone.now())
    recheck = FixityCheck.objects.get(recheck=True)
    run_all(launcher, "verify", FixityCheck, location__site=topo.cologne)
    recheck.refresh_from_db()
    assert (recheck.copy_id, recheck.outcome) == (bad_copy.pk, FixityOutcome.MISMATCH)

    # repaired from cornell's verified copy by the route's method, through an archive transfer.
    plan_fixity(now=timezone.now())
    repair = LongTermArchiveTransfer.objects.get(repair_of=bad_copy)
    assert (repair.source_location, repair.destination_location) == (cornell_archive, topo.cologne_archive)
    run_all(cornell_worker(launcher), "archive", LongTermArchiveTransfer)  # pushed from where the good copy is
    repair.refresh_from_db()
    assert repair.status == JobStatus.COMPLETED, repair.last_error
    assert file_sha256(bad_file) == bad.checksum
    bad_copy.refresh_from_db()
    assert (bad_copy.status, bad_copy.checksum_verified) == (CopyStatus.PRESENT, bad.checksum)
    assert raw_package_custody(bad).safe_sites == ["cologne", "cornell"]
    assert "repairing" in Path(repair.log_path).read_text()


def test_missing_archive_file_is_reported_missing_and_an_unmounted_location_is_a_failure(topology, launcher):
    topo = topology
    copies = archive_at(topo.cologne_archive, topo.packages[:1], topo.ccat_buffer)
    Path(topo.cologne_archive.base_path, "raw", topo.packages[0].name).unlink()

    plan_fixity(now=timezone.now())
    run_all(launcher, "verify", FixityCheck)

    copy = RawDataPackageCopy.objects.get(pk=copies[topo.packages[0].name].pk)
    assert (FixityCheck.objects.get().outcome, copy.status) == (FixityOutcome.MISSING, CopyStatus.MISSING)

    # the whole location gone (an unmounted disk): a failed attempt, not every file "missing".
    other = archive_at(topo.cologne_archive, topo.packages[1:], topo.ccat_buffer)
    Path(topo.cologne_archive.base_path).rename(topo.root / "unmounted")
    plan_fixity(now=timezone.now())
    run = launcher.run("--once", "--kinds", "verify", "--concurrency", "2")  # the check and the missing file's recheck
    assert run.returncode == 0, run.stderr
    checks = FixityCheck.objects.filter(status=JobStatus.PENDING)
    assert sorted(checks.values_list("copy_id", "recheck", "attempts", "outcome")) == [
        (copy.pk, True, 1, ""), (other[topo.packages[1].name].pk, False, 1, "")]
    assert all("not mounted" in check.last_error for check in checks)
    copy.refresh_from_db()
    assert copy.status == CopyStatus.MISSING  # unchanged: a failed check says nothing about the file
