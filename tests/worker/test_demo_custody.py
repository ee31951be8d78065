"""The demo's custody story, with the scheduler's passes and the reference worker moving real files.

Once the demo data is archived at cologne and cornell, ccat's buffer is empty (records DELETED,
files gone), the relay's bundle archives at cologne are removed after the next hop, and the
scheduler's lines say what was deleted and why.
"""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from opsdb.choices import CopyStatus
from opsdb.models import DataLocation, RawDataPackageCopy
from opsdb.scheduler import run_passes
from tests.worker.conftest import WorkerLauncher
from transfers.models import DataTransfer, DataTransferPackageCopy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def demo(settings, tmp_path, role_groups):
    settings.VAR_DIR = tmp_path
    settings.BUNDLE_MAX_WAIT_SECONDS = 0  # the demo's few packages need not wait for a full bundle
    call_command("load_demo", stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_worker", "demo-all", "--site", "ccat", "--site", "cologne", "--site", "cornell",
                 stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def location(name: str) -> DataLocation:
    site, loc = name.split(":")
    return DataLocation.objects.get(site__name=site, name=loc)


def files_under(loc: DataLocation, folder: str) -> list[str]:
    base = Path(loc.base_path, folder)
    return sorted(str(p) for p in base.rglob("*") if p.is_file()) if base.exists() else []


def test_demo_buffer_empties_once_archived_at_both_sites(demo, live_server, tmp_path):
    launcher = WorkerLauncher(live_server.url, demo, tmp_path / "logs")
    ccat = location("ccat:buffer")
    lines = []
    for _ in range(30):
        lines += [line for r in run_passes() for line in r.lines]
        in_deletion = (CopyStatus.DELETION_SCHEDULED, CopyStatus.DELETION_IN_PROGRESS)
        if not (RawDataPackageCopy.objects.filter(location=ccat).exclude(status=CopyStatus.DELETED).exists()
                or RawDataPackageCopy.objects.filter(status__in=in_deletion).exists()
                or DataTransferPackageCopy.objects.filter(status__in=in_deletion).exists()):
            break
        run = launcher.run("--once", "--concurrency", "4", "--method-command", "bbcp=cp {source} {destination}",
                           "--method-command", "rsync=cp {source} {destination}", timeout=120)
        assert run.returncode == 0, run.stderr
    launcher.kill_leftovers()

    assert set(RawDataPackageCopy.objects.filter(location=ccat).values_list("status", flat=True)) == {
        CopyStatus.DELETED}
    assert files_under(ccat, "raw") == [] and files_under(ccat, "bundles") == []
    for archive in ("cologne:archive", "cornell:archive"):
        safe = RawDataPackageCopy.objects.filter(location=location(archive), status=CopyStatus.PRESENT)
        assert safe.count() >= RawDataPackageCopy.objects.filter(location=ccat).count()
    relayed = DataTransfer.objects.filter(origin_location=location("cologne:buffer"), hop=2)
    assert relayed.exists()
    cologne_bundles = DataTransferPackageCopy.objects.filter(
        location=location("cologne:buffer"), transfer_package__in=relayed.values("transfer_package"))
    assert set(cologne_bundles.values_list("status", flat=True)) == {CopyStatus.DELETED}
    assert any("ccat:buffer (WHEN_SAFE) scheduled for deletion" in line and "cologne, cornell" in line
               for line in lines), lines
