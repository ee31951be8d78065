"""Deletion end to end: the scheduler's passes and the reference worker with real files.

The data flows ccat → cologne (bundle, transfer, unpack, archive) by the real passes and worker;
then the deletion pass empties ccat's buffer and cologne's buffer, and the worker removes the files.
"""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from custody.models import DeletionItem, DeletionOutcome
from opsdb.choices import CopyStatus, DeletionPolicy, JobStatus
from opsdb.models import DataLocation, RawDataPackageCopy
from opsdb.scheduler import run_passes
from tests import factories as f
from transfers.models import DataTransferPackageCopy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def flow_until_archived(topo, launcher, rounds: int = 12) -> None:
    """Scheduler passes and one-job worker runs until both packages are archived at cologne."""
    for _ in range(rounds):
        run_passes()
        archived = RawDataPackageCopy.objects.filter(location=topo.cologne_archive, status=CopyStatus.PRESENT)
        if archived.count() == len(topo.packages):
            return
        run = launcher.run("--once", "--kinds", "package,transfer,unpack,archive")
        assert run.returncode == 0, run.stderr
    raise AssertionError("the data was not archived")


def files_under(base: str) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in Path(base).rglob("*") if p.is_file())


def test_buffers_are_emptied_once_archived_and_a_vanished_file_counts_as_deleted(topology, launcher):
    topo = topology
    f.RouteFactory(origin_site=topo.ccat, destination_site=topo.cologne, method="copy", bundle_max_wait=timedelta(0))
    flow_until_archived(topo, launcher)  # buffers keep everything meanwhile (policy NEVER by default)
    assert files_under(topo.ccat_buffer.base_path) != []
    DataLocation.objects.filter(pk__in=[topo.ccat_buffer.pk, topo.cologne_buffer.pk]).update(
        deletion_policy=DeletionPolicy.WHEN_SAFE)
    vanished = Path(topo.ccat_buffer.base_path, "raw", topo.packages[0].name)
    os.remove(vanished)  # someone removed it by hand before ops-db did

    results = run_passes()
    for _ in range(4):
        run = launcher.run("--once", "--kinds", "delete")
        assert run.returncode == 0, run.stderr

    lines = [line for r in results for line in r.lines if line.startswith("deletion:")]
    assert any("ccat" in line and "scheduled for deletion" in line for line in lines), lines
    for location in (topo.ccat_buffer, topo.cologne_buffer):
        assert set(RawDataPackageCopy.objects.filter(location=location).values_list("status", flat=True)) == {
            CopyStatus.DELETED}
        assert set(DataTransferPackageCopy.objects.filter(location=location).values_list("status", flat=True)) \
            == {CopyStatus.DELETED}
        assert files_under(location.base_path) == []
    assert set(RawDataPackageCopy.objects.filter(location=topo.cologne_archive).values_list("status", flat=True)) \
        == {CopyStatus.PRESENT}
    assert len(files_under(topo.cologne_archive.base_path)) == len(topo.packages)
    gone = DeletionItem.objects.get(raw_package_copy__raw_package=topo.packages[0],
                                    raw_package_copy__location=topo.ccat_buffer)
    assert (gone.outcome, gone.job.status) == (DeletionOutcome.GONE, JobStatus.COMPLETED)


def test_worker_refuses_a_path_that_leads_outside_the_base_path(topology, launcher, tmp_path):
    topo = topology
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.tar").write_bytes(b"keep me")
    os.symlink(outside, Path(topo.ccat_buffer.base_path, "escape"))
    package = f.RawDataPackageFactory()
    copy = f.RawDataPackageCopyFactory(location=topo.ccat_buffer, path="escape/precious.tar", raw_package=package)
    # a verified archive copy elsewhere, so the guard lets the buffer copy go
    f.RawDataPackageCopyFactory(location=topo.cologne_archive, raw_package=package,
                                checksum_verified=package.checksum, verified_at="2026-01-01T00:00:00Z")
    RawDataPackageCopy.objects.filter(pk=copy.pk).update(status=CopyStatus.DELETION_SCHEDULED)
    DataLocation.objects.filter(pk=topo.ccat_buffer.pk).update(deletion_policy=DeletionPolicy.WHEN_SAFE)
    from custody.planning import create_jobs
    from opsdb.planning import PassResult

    create_jobs(now=timezone.now(), result=PassResult("deletion"))
    run = launcher.run("--once", "--kinds", "delete")

    assert run.returncode == 0, run.stderr
    assert (outside / "precious.tar").read_bytes() == b"keep me"
    item = DeletionItem.objects.get(raw_package_copy=copy)
    assert item.outcome == DeletionOutcome.FAILED
    assert "outside" in item.error
