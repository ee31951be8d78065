"""A bundle copy a worker found corrupt: out of service, its readers held, a good copy fetched again."""

import threading

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataPackageCopy
from opsdb.services import job_claim
from opsdb.templatetags.opsdb_admin import ops_attention
from tests import factories as f
from tests.apiclient import worker_client
from transfers.models import DataTransfer, DataTransferPackageCopy, DataTransferRoute, DataTransferUnpack
from transfers.planning import plan_bundle_repairs, plan_transfers, plan_unpacks

pytestmark = pytest.mark.django_db

CHECKSUM = "ab" * 32
LABEL = "Corrupt transfer package copies with no good copy to fetch from"


def report(client, kind, job_id, body, action="fail"):
    return client.post(f"/api/v1/work/{kind}/{job_id}/{action}/", body, format="json")


def copy_at(dtp, location, status=CopyStatus.PRESENT):
    return f.DataTransferPackageCopyFactory(transfer_package=dtp, location=location, status=status,
                                            checksum_verified=CHECKSUM, verified_at=timezone.now())


@pytest.fixture
def relay():
    """ccat → cologne → cornell by a RELAY route; a built bundle at ccat whose first hop reached cologne."""
    ccat, cologne, cornell = (f.SiteFactory(name=n) for n in ("ccat", "cologne", "cornell"))
    buffers = {s.name: f.DataLocationFactory(site=s, name="buffer") for s in (ccat, cologne, cornell)}
    route = f.RouteFactory(origin_site=ccat, destination_site=cornell, route_type="RELAY", relay_site=cologne,
                           method="copy")
    dtp = f.DataTransferPackageFactory(origin_location=buffers["ccat"], status=JobStatus.COMPLETED,
                                       checksum=CHECKSUM, size=30)
    for name in ("raw-a.tar", "raw-b.tar"):
        f.DataTransferPackageMemberFactory(transfer_package=dtp,
                                           raw_package=f.RawDataPackageFactory(name=name, checksum="cd" * 32))
    origin_copy = copy_at(dtp, buffers["ccat"])
    hop1 = f.DataTransferFactory(transfer_package=dtp, origin_location=buffers["ccat"], route=route, method="copy",
                                 destination_location=buffers["cologne"], status=JobStatus.TRANSFERRED)
    relay_copy = copy_at(dtp, buffers["cologne"])
    hop2 = f.DataTransferFactory(transfer_package=dtp, origin_location=buffers["cologne"], route=route,
                                 method="copy", destination_location=buffers["cornell"], hop=2, previous=hop1)
    return {"dtp": dtp, "route": route, "buffers": buffers, "hop1": hop1, "hop2": hop2,
            "origin_copy": origin_copy, "relay_copy": relay_copy}


def claimed(job):
    return job_claim(job=job, worker="w1")


def corrupt(client, kind, job, **extra):
    return report(client, kind, job.pk, {"lease_token": job.lease_token, "error": "checksum mismatch for source",
                                         "retryable": False, "source_corrupt": True, **extra})


def test_source_corrupt_takes_the_copy_out_of_service_and_holds_the_transfer(relay):
    client = worker_client()
    hop2 = claimed(relay["hop2"])

    response = corrupt(client, "transfer", hop2)

    assert response.status_code == 200, response.json()
    copy = DataTransferPackageCopy.objects.get(pk=relay["relay_copy"].pk)
    hop2.refresh_from_db()
    assert copy.status == CopyStatus.MISMATCH
    log = StateLog.objects.for_(copy).get()
    assert (log.source_state, log.state) == (CopyStatus.PRESENT, CopyStatus.MISMATCH)
    assert "found corrupt by w1" in log.description
    # the job is not at fault: it waits for a good copy, and the link's health is untouched
    assert (hop2.status, response.json()["status"]) == (JobStatus.PENDING, JobStatus.PENDING)
    assert DataTransferRoute.objects.get(pk=relay["route"].pk).consecutive_failures == 0
    assert DataTransferPackageCopy.objects.get(pk=relay["origin_copy"].pk).status == CopyStatus.PRESENT
    # held while its source is bad, even when due
    DataTransfer.objects.filter(pk=hop2.pk).update(next_attempt_at=None)
    assert client.post("/api/v1/work/claim/", {"worker": "w2", "kinds": ["transfer"]},
                       format="json").status_code == 204
    # the same report again changes nothing
    assert corrupt(client, "transfer", hop2).status_code == 200
    assert StateLog.objects.for_(copy).count() == 1


def test_source_corrupt_unpack_marks_the_copy_where_it_landed(relay):
    client = worker_client()
    unpack = claimed(f.DataTransferUnpackFactory(transfer=relay["hop1"]))

    assert corrupt(client, "unpack", unpack).status_code == 200

    unpack.refresh_from_db()
    assert DataTransferPackageCopy.objects.get(pk=relay["relay_copy"].pk).status == CopyStatus.MISMATCH
    assert unpack.status == JobStatus.PENDING
    DataTransferUnpack.objects.filter(pk=unpack.pk).update(next_attempt_at=None)
    assert client.post("/api/v1/work/claim/", {"worker": "w2", "kinds": ["unpack"]},
                       format="json").status_code == 204


@pytest.mark.parametrize("value", ["maybe", 3, None, [True]])
def test_bad_source_corrupt_value_is_400_and_changes_nothing(relay, value):
    hop2 = claimed(relay["hop2"])

    response = corrupt(worker_client(), "transfer", hop2, source_corrupt=value)

    hop2.refresh_from_db()
    assert response.status_code == 400
    assert "source_corrupt" in response.json()
    assert hop2.status == JobStatus.ACTIVE
    assert DataTransferPackageCopy.objects.get(pk=relay["relay_copy"].pk).status == CopyStatus.PRESENT


def test_source_corrupt_on_a_kind_that_reads_no_copy_is_400_and_changes_nothing(relay):
    bundle = claimed(f.DataTransferPackageFactory(origin_location=relay["buffers"]["ccat"]))

    response = corrupt(worker_client(), "package", bundle)

    bundle.refresh_from_db()
    assert response.status_code == 400
    assert "source_corrupt" in response.json()
    assert (bundle.status, bundle.attempts) == (JobStatus.ACTIVE, 0)


def test_source_corrupt_in_a_batch_report(relay):
    client = worker_client()
    hop2 = claimed(relay["hop2"])
    bundle = claimed(f.DataTransferPackageFactory(origin_location=relay["buffers"]["ccat"]))
    item = {"outcome": "fail", "error": "bad source", "source_corrupt": True}

    response = client.post("/api/v1/work/report/", {"reports": [
        {**item, "kind": "transfer", "id": hop2.pk, "lease_token": hop2.lease_token},
        {**item, "kind": "package", "id": bundle.pk, "lease_token": bundle.lease_token},
    ]}, format="json")

    assert [r["code"] for r in response.json()["results"]] == [200, 400]
    assert DataTransferPackageCopy.objects.get(pk=relay["relay_copy"].pk).status == CopyStatus.MISMATCH
    bundle.refresh_from_db()
    assert bundle.status == JobStatus.ACTIVE


def test_repair_is_planned_from_where_the_copy_came_and_completes_the_relay(relay):
    client = worker_client()
    hop2 = claimed(relay["hop2"])
    corrupt(client, "transfer", hop2)

    result = plan_bundle_repairs(now=timezone.now())

    repair = DataTransfer.objects.get(repair_of=relay["relay_copy"])
    assert result.count == 1
    assert (repair.origin_location, repair.destination_location, repair.route, repair.method, repair.hop) == (
        relay["buffers"]["ccat"], relay["buffers"]["cologne"], relay["route"], "copy", 1)
    # once: a second pass, and the routing pass, make nothing more
    assert plan_bundle_repairs(now=timezone.now()).count == 0
    assert plan_transfers(now=timezone.now()).count == 0
    assert not any(i["label"] == LABEL and i["count"] for i in ops_attention())

    repair = claimed(repair)
    assert report(client, "transfer", repair.pk, {"lease_token": repair.lease_token, "checksum": CHECKSUM},
                  action="complete").status_code == 200

    copy = DataTransferPackageCopy.objects.get(pk=relay["relay_copy"].pk)
    assert copy.status == CopyStatus.PRESENT
    assert [log.state for log in StateLog.objects.for_(copy).order_by("pk")] == [CopyStatus.MISMATCH,
                                                                                  CopyStatus.PRESENT]
    hop2.refresh_from_db()
    assert (hop2.status, hop2.next_attempt_at) == (JobStatus.PENDING, None)  # due now
    assert plan_unpacks(now=timezone.now()).count == 0  # a repair is not unpacked where it lands
    body = client.post("/api/v1/work/claim/", {"worker": "w2", "kinds": ["transfer"]}, format="json").json()
    assert body["id"] == hop2.pk


def test_repair_retries_a_reader_that_failed_for_good(relay):
    unpack = f.DataTransferUnpackFactory(transfer=relay["hop1"], status=JobStatus.FAILED, attempts=5)
    DataTransferPackageCopy.objects.filter(pk=relay["relay_copy"].pk).update(status=CopyStatus.MISMATCH)
    plan_bundle_repairs(now=timezone.now())
    repair = claimed(DataTransfer.objects.get(repair_of=relay["relay_copy"]))

    response = report(worker_client(), "transfer", repair.pk, {"lease_token": repair.lease_token,
                                                               "checksum": CHECKSUM}, action="complete")

    assert response.status_code == 200, response.json()
    unpack.refresh_from_db()
    assert (unpack.status, unpack.attempts) == (JobStatus.PENDING, 0)
    assert "fetched again by transfer" in StateLog.objects.for_(unpack).get().description


def test_repair_from_another_site_by_its_direct_route(relay):
    b = relay["buffers"]
    DataTransferPackageCopy.objects.filter(pk=relay["origin_copy"].pk).update(status=CopyStatus.DELETED)
    elsewhere = f.DataLocationFactory(site=f.SiteFactory(name="bonn"), name="buffer")
    copy_at(relay["dtp"], elsewhere)
    f.RouteFactory(origin_site=elsewhere.site, destination_site=b["cologne"].site, method="bbcp")
    DataTransferPackageCopy.objects.filter(pk=relay["relay_copy"].pk).update(status=CopyStatus.MISMATCH)

    plan_bundle_repairs(now=timezone.now())

    repair = DataTransfer.objects.get(repair_of=relay["relay_copy"])
    assert (repair.origin_location, repair.method) == (elsewhere, "bbcp")


def test_no_good_copy_anywhere_needs_attention(relay):
    DataTransferPackageCopy.objects.filter(pk=relay["origin_copy"].pk).update(status=CopyStatus.MISMATCH)
    DataTransferPackageCopy.objects.filter(pk=relay["relay_copy"].pk).update(status=CopyStatus.MISMATCH)

    result = plan_bundle_repairs(now=timezone.now())

    assert result.count == 0
    assert not DataTransfer.objects.filter(repair_of__isnull=False).exists()
    assert "2 corrupt bundle copies with no good copy to fetch from" in result.lines[-1]
    [item] = [i for i in ops_attention() if i["label"] == LABEL]
    assert item["count"] == 2
    assert "no verified copy of it is at a location with a route to cologne" in item["details"][1]["text"]


def test_repair_pass_queries_do_not_grow_with_copies(relay):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            plan_bundle_repairs(now=timezone.now())
        DataTransfer.objects.filter(repair_of__isnull=False).delete()
        return len(ctx.captured_queries)

    DataTransferPackageCopy.objects.filter(pk=relay["relay_copy"].pk).update(status=CopyStatus.MISMATCH)
    one = queries()
    for _ in range(4):
        dtp = f.DataTransferPackageFactory(origin_location=relay["buffers"]["ccat"], status=JobStatus.COMPLETED,
                                           checksum=CHECKSUM)
        copy_at(dtp, relay["buffers"]["ccat"])
        copy_at(dtp, relay["buffers"]["cologne"], status=CopyStatus.MISMATCH)
        f.DataTransferFactory(transfer_package=dtp, origin_location=relay["buffers"]["ccat"], route=relay["route"],
                              method="copy", destination_location=relay["buffers"]["cologne"],
                              status=JobStatus.TRANSFERRED)

    assert queries() == one
    assert RawDataPackageCopy.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_schedulers_make_one_repair(relay):
    DataTransferPackageCopy.objects.filter(pk=relay["relay_copy"].pk).update(status=CopyStatus.MISMATCH)
    barrier = threading.Barrier(4)
    errors = []

    def tick():
        try:
            barrier.wait()
            plan_bundle_repairs(now=timezone.now())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert DataTransfer.objects.filter(repair_of=relay["relay_copy"]).count() == 1


def test_held_readers_say_why(relay):
    from opsdb.explain import explain_jobs

    client = worker_client()
    hop2 = claimed(relay["hop2"])
    corrupt(client, "transfer", hop2)
    unpack = claimed(f.DataTransferUnpackFactory(transfer=relay["hop1"]))
    corrupt(client, "unpack", unpack)
    hop2.refresh_from_db()
    unpack.refresh_from_db()

    [before] = explain_jobs([hop2])
    plan_bundle_repairs(now=timezone.now())
    after = explain_jobs([hop2, unpack])

    assert before.code == "source_corrupt"
    assert "no good copy to fetch it from is known yet" in before.message
    repair = DataTransfer.objects.get(repair_of=relay["relay_copy"])
    for explanation in after:
        assert explanation.code == "source_corrupt"
        assert f"being fetched again from ccat:buffer by repair transfer #{repair.pk}" in explanation.message
