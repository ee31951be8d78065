"""The package, transfer and unpack job kinds through the work API: payloads and recorded results."""

import pytest

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import RawDataPackageCopy
from opsdb.services import job_claim, job_complete
from tests import factories as f
from tests.apiclient import worker_client
from transfers.models import DataTransferPackageCopy

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"


@pytest.fixture
def client():
    return worker_client()


def claim(client, **body):
    return client.post(CLAIM, {"worker": "w1", **body}, format="json")


def report(client, kind, job_id, action, body):
    return client.post(f"/api/v1/work/{kind}/{job_id}/{action}/", body, format="json")


@pytest.fixture
def bundle():
    """A transfer package of two raw packages at an origin buffer."""
    dtp = f.DataTransferPackageFactory(payload_size=20)
    for name in ("raw-b.tar", "raw-a.tar"):
        raw = f.RawDataPackageFactory(name=name, size=10)
        f.DataTransferPackageMemberFactory(transfer_package=dtp, raw_package=raw)
    return dtp


def built(dtp, checksum="ab" * 32, size=30):
    dtp.size, dtp.checksum = size, checksum
    dtp.save()
    job = job_claim(job=dtp, worker="builder")
    job_complete(job=job, lease_token=job.lease_token)
    return dtp


def test_package_claim_lists_members_in_name_order(client, bundle):
    body = claim(client, kinds=["package"]).json()

    assert body["kind"] == "package"
    assert body["transfer_package"] == {"id": bundle.pk, "name": bundle.name, "archive_path": bundle.archive_path,
                                        "payload_size": 20, "checksum_algorithm": "sha256"}
    assert body["location"]["id"] == bundle.origin_location.pk
    assert [m["name"] for m in body["members"]] == ["raw-a.tar", "raw-b.tar"]
    assert body["members"][0]["path"] == "raw/raw-a.tar"


def test_package_complete_records_size_checksum_and_copy_at_origin(client, bundle):
    token = claim(client, kinds=["package"]).json()["lease_token"]

    response = report(client, "package", bundle.pk, "complete",
                      {"lease_token": token, "size": 30, "checksum": "AB" * 32})

    bundle.refresh_from_db()
    copy = DataTransferPackageCopy.objects.get(transfer_package=bundle)
    assert response.status_code == 200
    assert (bundle.status, bundle.size, bundle.checksum) == (JobStatus.COMPLETED, 30, "ab" * 32)
    assert (copy.location_id, copy.path, copy.status) == (bundle.origin_location_id, bundle.archive_path,
                                                           CopyStatus.PRESENT)


@pytest.mark.parametrize(("body", "field"), [({"checksum": "ab"}, "size"), ({"size": -1, "checksum": "ab"}, "size"),
                                             ({"size": 3}, "checksum"), ({"size": 3, "checksum": "zz"}, "checksum")])
def test_package_complete_malformed_is_400(client, bundle, body, field):
    token = claim(client, kinds=["package"]).json()["lease_token"]

    response = report(client, "package", bundle.pk, "complete", {"lease_token": token, **body})

    bundle.refresh_from_db()
    assert response.status_code == 400
    assert field in response.json()
    assert bundle.status == JobStatus.ACTIVE
    assert not DataTransferPackageCopy.objects.exists()


@pytest.fixture
def transfer(bundle):
    built(bundle)
    destination = f.DataLocationFactory(site=f.SiteFactory(name="cologne"))
    return f.DataTransferFactory(transfer_package=bundle, destination_location=destination, method="rsync", hop=1)


def test_transfer_claim_gives_source_and_destination(client, transfer):
    body = claim(client, kinds=["transfer"]).json()

    dtp = transfer.transfer_package
    assert body["site"] == transfer.origin_location.site.name
    assert body["transfer_package"] == {"id": dtp.pk, "name": dtp.name, "size": 30, "checksum": "ab" * 32,
                                        "checksum_algorithm": "sha256"}
    assert (body["method"], body["hop"]) == ("rsync", 1)
    assert body["source"] == {"location": body["source"]["location"], "path": dtp.archive_path}
    assert body["source"]["location"]["id"] == transfer.origin_location_id
    assert body["destination"]["location"]["site"] == "cologne"
    assert body["destination"]["path"] == dtp.archive_path


def test_transfer_is_claimed_at_its_origin_site_only(transfer):
    at_destination = worker_client("cologne-dtn", sites=[transfer.destination_location.site])
    at_origin = worker_client("origin-dtn", sites=[transfer.origin_location.site])

    assert claim(at_destination, kinds=["transfer"]).status_code == 204
    assert claim(at_origin, kinds=["transfer"]).json()["id"] == transfer.pk


def test_transfer_claim_filters_methods(client, transfer):
    assert claim(client, kinds=["transfer"], methods=["bbcp", "s3"]).status_code == 204
    assert claim(client, kinds=["transfer"], methods=["rsync"]).json()["id"] == transfer.pk


def test_transfer_complete_records_copy_at_destination(client, transfer):
    token = claim(client, kinds=["transfer"]).json()["lease_token"]

    response = report(client, "transfer", transfer.pk, "complete",
                      {"lease_token": token, "checksum": "ab" * 32, "size": 30, "path": "bundles/x.tar"})

    transfer.refresh_from_db()
    copy = DataTransferPackageCopy.objects.get(location=transfer.destination_location)
    assert response.json()["status"] == "TRANSFERRED"
    assert transfer.destination_path == "bundles/x.tar"
    assert (copy.path, copy.checksum_verified) == ("bundles/x.tar", "ab" * 32)


@pytest.mark.parametrize(("body", "field"), [({"checksum": "cd" * 32}, "checksum"),
                                             ({"checksum": "ab" * 32, "size": 31}, "size"),
                                             ({"checksum": "ab" * 32, "path": "../escape"}, "path")])
def test_transfer_complete_mismatch_is_400_and_nothing_recorded(client, transfer, body, field):
    token = claim(client, kinds=["transfer"]).json()["lease_token"]

    response = report(client, "transfer", transfer.pk, "complete", {"lease_token": token, **body})

    transfer.refresh_from_db()
    assert response.status_code == 400
    assert field in response.json()
    assert transfer.status == JobStatus.ACTIVE
    assert not DataTransferPackageCopy.objects.filter(location=transfer.destination_location).exists()


@pytest.mark.parametrize("changes", [{"path": "bundles/../../x.tar"}, {"path": "-x.tar"}, {"path": "a//x.tar"},
                                     {"path": "bundles/x.tar\u0000"}, {"path": "bundles/x\n.tar"},
                                     {"log_path": "/logs/a\nfake line"}, {"log_path": "/logs/a\u0000"}])
def test_transfer_complete_with_unsafe_path_is_400_and_nothing_recorded(client, transfer, changes):
    token = claim(client, kinds=["transfer"]).json()["lease_token"]

    response = report(client, "transfer", transfer.pk, "complete",
                      {"lease_token": token, "checksum": "ab" * 32, **changes})

    transfer.refresh_from_db()
    assert response.status_code == 400
    assert set(changes) <= set(response.json())
    assert transfer.status == JobStatus.ACTIVE
    assert not DataTransferPackageCopy.objects.filter(location=transfer.destination_location).exists()


def test_transfer_of_unbuilt_package_cannot_complete(client):
    transfer = f.DataTransferFactory()
    token = claim(client, kinds=["transfer"]).json()["lease_token"]

    response = report(client, "transfer", transfer.pk, "complete", {"lease_token": token, "checksum": "ab"})

    assert response.status_code == 400
    assert "no recorded checksum" in response.json()["checksum"][0]


def test_route_concurrency_limit_is_respected(client):
    route = f.RouteFactory(max_concurrent=2)
    transfers = [f.DataTransferFactory(route=route) for _ in range(4)]
    unrouted = f.DataTransferFactory()

    claimed = [claim(client, kinds=["transfer"]).json()["id"] for _ in range(3)]

    assert sorted(claimed) == sorted([transfers[0].pk, transfers[1].pk, unrouted.pk])
    assert claim(client, kinds=["transfer"]).status_code == 204


def test_route_concurrency_slot_frees_when_a_transfer_ends(client):
    route = f.RouteFactory(max_concurrent=1)
    first, second = (f.DataTransferFactory(route=route) for _ in range(2))
    token = claim(client, kinds=["transfer"]).json()["lease_token"]
    assert claim(client, kinds=["transfer"]).status_code == 204

    report(client, "transfer", first.pk, "fail", {"lease_token": token, "error": "link down"})

    assert claim(client, kinds=["transfer"]).json()["id"] == second.pk


@pytest.fixture
def arrived(client, transfer):
    token = claim(client, kinds=["transfer"]).json()["lease_token"]
    report(client, "transfer", transfer.pk, "complete", {"lease_token": token, "checksum": "ab" * 32})
    return f.DataTransferUnpackFactory(transfer=transfer)


def test_unpack_is_not_claimable_before_the_transfer_arrived(client, transfer):
    f.DataTransferUnpackFactory(transfer=transfer)

    assert claim(client, kinds=["unpack"]).status_code == 204


def test_unpack_claim_gives_archive_and_members(client, arrived):
    body = claim(client, kinds=["unpack"]).json()

    transfer = arrived.transfer
    transfer.refresh_from_db()
    assert transfer.destination_path == transfer.transfer_package.archive_path
    assert body["id"] == transfer.pk
    assert body["site"] == "cologne"
    assert body["transfer"] == {"id": transfer.pk}
    assert body["location"]["id"] == transfer.destination_location_id
    assert body["archive_path"] == transfer.destination_path
    assert [(m["name"], m["path"], m["size"]) for m in body["members"]] == [
        ("raw-a.tar", "raw/raw-a.tar", 10), ("raw-b.tar", "raw/raw-b.tar", 10)]


def unpack_report(body):
    return [{"name": m["name"], "path": m["path"], "checksum": m["checksum"]} for m in body["members"]]


def test_unpack_complete_records_a_copy_per_member(client, arrived):
    body = claim(client, kinds=["unpack"]).json()

    response = report(client, "unpack", body["id"], "complete",
                      {"lease_token": body["lease_token"], "members": unpack_report(body)})

    copies = RawDataPackageCopy.objects.filter(location=arrived.transfer.destination_location).order_by("path")
    assert response.json()["status"] == "UNPACKED"
    assert [(c.raw_package.name, c.path) for c in copies] == [("raw-a.tar", "raw/raw-a.tar"),
                                                              ("raw-b.tar", "raw/raw-b.tar")]


@pytest.mark.parametrize("change", ["drop", "extra", "checksum", "duplicate", "empty"])
def test_unpack_complete_with_bad_members_is_400_and_nothing_recorded(client, arrived, change):
    body = claim(client, kinds=["unpack"]).json()
    members = unpack_report(body)
    if change == "drop":
        members.pop()
    elif change == "extra":
        members.append({"name": "stranger.tar", "path": "raw/stranger.tar", "checksum": "00"})
    elif change == "checksum":
        members[0]["checksum"] = "ff" * 32
    elif change == "duplicate":
        members.append(dict(members[0]))
    else:
        members = []

    response = report(client, "unpack", body["id"], "complete", {"lease_token": body["lease_token"],
                                                                 "members": members})

    assert response.status_code == 400
    assert "members" in response.json()
    assert not RawDataPackageCopy.objects.filter(location=arrived.transfer.destination_location).exists()


def test_unpack_failure_never_resets_the_transfer(client, arrived):
    body = claim(client, kinds=["unpack"]).json()

    report(client, "unpack", body["id"], "fail", {"lease_token": body["lease_token"], "error": "bad tar"})

    arrived.refresh_from_db()
    arrived.transfer.refresh_from_db()
    assert arrived.status == JobStatus.PENDING
    assert arrived.transfer.status == JobStatus.TRANSFERRED


def test_unpack_reports_use_the_transfer_id(client, arrived):
    assert report(client, "unpack", arrived.pk + 1000, "heartbeat", {"lease_token": "x"}).status_code == 404


def test_buffer_factory_default_is_a_buffer():
    # The payload tests above rely on transfer packages being built at a buffer.
    assert f.DataTransferPackageFactory().origin_location.location_type == LocationType.BUFFER


def test_unpack_complete_refreshes_an_old_deleted_copy(client, arrived):
    raw = arrived.transfer.transfer_package.members.order_by("raw_package__name").first().raw_package
    old = RawDataPackageCopy.objects.create(raw_package=raw, location=arrived.transfer.destination_location,
                                            path="old/place.tar", status=CopyStatus.DELETED)
    body = claim(client, kinds=["unpack"]).json()

    report(client, "unpack", body["id"], "complete", {"lease_token": body["lease_token"],
                                                      "members": unpack_report(body)})

    old.refresh_from_db()
    assert (old.status, old.path, old.checksum_verified) == (CopyStatus.PRESENT, "raw/raw-a.tar", raw.checksum)
    assert old.verified_at is not None
    assert RawDataPackageCopy.objects.filter(raw_package=raw).count() == 1
