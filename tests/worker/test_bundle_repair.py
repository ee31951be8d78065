"""A bundle corrupted at a buffer, end to end: the reference worker reading it says so, the copy leaves
service (MISMATCH), the scheduler fetches a good copy again, and the unpack or relay completes with the
right bytes. The scheduler's passes run between worker runs, as ``run_scheduler`` would.
"""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import RawDataPackageCopy
from opsdb.templatetags.opsdb_admin import ops_attention
from tests import factories as f
from tests.worker.conftest import WorkerLauncher, file_sha256, flip_byte
from tests.worker.test_end_to_end import build_bundle
from transfers.models import DataTransfer, DataTransferPackageCopy, DataTransferUnpack
from transfers.planning import plan_bundle_repairs, plan_transfers, plan_unpacks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def plan() -> None:
    now = timezone.now()
    plan_transfers(now=now)
    plan_unpacks(now=now)
    plan_bundle_repairs(now=now)


def run(launcher, *kinds: str) -> None:
    result = launcher.run("--once", "--kinds", *kinds)
    assert result.returncode == 0, result.stderr


def bundle_copy(dtp, location) -> DataTransferPackageCopy:
    return DataTransferPackageCopy.objects.get(transfer_package=dtp, location=location)


def assert_unpacked(topo, location) -> None:
    for package in topo.packages:
        copy = RawDataPackageCopy.objects.get(raw_package=package, location=location)
        assert copy.status == CopyStatus.PRESENT
        assert file_sha256(topo.path(location, copy.path)) == package.checksum


def test_bundle_corrupted_at_the_buffer_is_fetched_again_and_unpacked(topology, launcher):
    topo = topology
    f.RouteFactory(origin_site=topo.ccat, destination_site=topo.cologne, method="copy")
    dtp = build_bundle(topo, launcher)
    plan()
    run(launcher, "transfer")
    landed = topo.path(topo.cologne_buffer, dtp.archive_path)
    flip_byte(landed, offset=512 + 100)
    plan()
    unpack = DataTransferUnpack.objects.get()

    # the unpack verifies the archive first: the copy there leaves service, the unpack waits
    run(launcher, "unpack")
    unpack.refresh_from_db()
    assert unpack.status == JobStatus.PENDING
    assert bundle_copy(dtp, topo.cologne_buffer).status == CopyStatus.MISMATCH
    assert not RawDataPackageCopy.objects.filter(location=topo.cologne_buffer).exists()

    # the scheduler fetches it again from ccat, where it was built
    plan()
    repair = DataTransfer.objects.get(repair_of__isnull=False)
    assert (repair.origin_location, repair.destination_location) == (topo.ccat_buffer, topo.cologne_buffer)
    run(launcher, "transfer")
    repair.refresh_from_db()
    assert repair.status == JobStatus.TRANSFERRED, repair.last_error
    assert file_sha256(landed) == dtp.checksum
    copy = bundle_copy(dtp, topo.cologne_buffer)
    assert copy.status == CopyStatus.PRESENT
    assert [log.state for log in StateLog.objects.for_(copy).order_by("pk")] == [CopyStatus.MISMATCH,
                                                                                  CopyStatus.PRESENT]

    # and the unpack completes, with the right bytes
    plan()
    assert DataTransferUnpack.objects.count() == 1
    run(launcher, "unpack")
    unpack.refresh_from_db()
    assert unpack.status == JobStatus.UNPACKED, unpack.last_error
    assert_unpacked(topo, topo.cologne_buffer)


def test_bundle_corrupted_at_a_relay_is_fetched_again_and_relayed(topology, launcher):
    topo = topology
    cornell = f.SiteFactory(name="cornell")
    cornell_buffer = f.DataLocationFactory(site=cornell, name="buffer", location_type=LocationType.BUFFER,
                                           base_path=str(topo.root / "cornell" / "buffer"), host="")
    f.RouteFactory(origin_site=topo.ccat, destination_site=cornell, route_type="RELAY", relay_site=topo.cologne,
                   method="copy")
    dtp = build_bundle(topo, launcher)
    plan()
    run(launcher, "transfer")  # hop 1: ccat → cologne
    relayed = topo.path(topo.cologne_buffer, dtp.archive_path)
    flip_byte(relayed)
    plan()
    hop2 = DataTransfer.objects.get(hop=2)

    # hop 2 reads the corrupt copy at cologne: it says so; the copy leaves service, hop 2 waits
    run(launcher, "transfer")
    hop2.refresh_from_db()
    assert hop2.status == JobStatus.PENDING
    assert "source" in hop2.last_error
    assert bundle_copy(dtp, topo.cologne_buffer).status == CopyStatus.MISMATCH
    assert not DataTransferPackageCopy.objects.filter(transfer_package=dtp, location=cornell_buffer).exists()

    # the scheduler sends it to cologne again; then hop 2 goes on and cornell unpacks the right bytes
    plan()
    repair = DataTransfer.objects.get(repair_of__isnull=False)
    assert (repair.origin_location, repair.destination_location, repair.hop) == (
        topo.ccat_buffer, topo.cologne_buffer, 1)
    run(launcher, "transfer")
    repair.refresh_from_db()
    assert repair.status == JobStatus.TRANSFERRED, repair.last_error
    assert file_sha256(relayed) == dtp.checksum
    run(launcher, "transfer")
    hop2.refresh_from_db()
    assert hop2.status == JobStatus.TRANSFERRED, hop2.last_error
    assert file_sha256(topo.path(cornell_buffer, dtp.archive_path)) == dtp.checksum
    plan()
    out = io.StringIO()
    call_command("create_worker", "cornell-worker", "--site", "cornell", stdout=out, stderr=io.StringIO())
    run(WorkerLauncher(launcher.url, out.getvalue().strip(), launcher.log_dir), "unpack")
    unpack = DataTransferUnpack.objects.get()
    assert (unpack.transfer_id, unpack.status) == (hop2.pk, JobStatus.UNPACKED), unpack.last_error
    assert_unpacked(topo, cornell_buffer)
    assert DataTransfer.objects.count() == 3  # hop 1, its repair, hop 2: nothing sent twice besides the repair


def test_bundle_corrupted_where_it_was_built_with_no_other_copy_needs_attention(topology, launcher):
    topo = topology
    f.RouteFactory(origin_site=topo.ccat, destination_site=topo.cologne, method="copy")
    dtp = build_bundle(topo, launcher)
    flip_byte(topo.path(topo.ccat_buffer, dtp.archive_path))
    plan()

    run(launcher, "transfer")
    plan()

    transfer = DataTransfer.objects.get()
    assert transfer.status == JobStatus.PENDING
    assert bundle_copy(dtp, topo.ccat_buffer).status == CopyStatus.MISMATCH
    assert not DataTransfer.objects.filter(repair_of__isnull=False).exists()
    [item] = [i for i in ops_attention() if i["label"].startswith("Corrupt transfer package copies")]
    assert item["count"] == 1
    assert str(dtp) in item["details"][0]["text"]
    DataTransfer.objects.filter(pk=transfer.pk).update(next_attempt_at=None)  # due, but held
    run(launcher, "transfer")  # nothing is sent from the bad copy
    transfer.refresh_from_db()
    assert (transfer.status, transfer.attempts) == (JobStatus.PENDING, 1)
