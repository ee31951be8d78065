"""A bundle that fails because of its content (one bad member) is split, so its good members go on.

A raw package is bundled once; before, a bundle that failed for good held its members for ever.
"""

import pytest

from opsdb.choices import JobStatus
from tests import factories as f
from tests.apiclient import worker_client
from transfers.models import DataTransferPackage, DataTransferPackageMember

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"


@pytest.fixture
def client():
    return worker_client()


def bundle_of(names: list[str], **kwargs) -> DataTransferPackage:
    dtp = f.DataTransferPackageFactory(name="dtp-ccat-1.tar", payload_size=10 * len(names), **kwargs)
    for name in names:
        f.DataTransferPackageMemberFactory(transfer_package=dtp, raw_package=f.RawDataPackageFactory(name=name,
                                                                                                      size=10))
    return dtp


def fail(client, dtp: DataTransferPackage, *, retryable: bool):
    job = client.post(CLAIM, {"worker": "w1", "kinds": ["package"]}, format="json").json()
    assert job["id"] == dtp.pk
    return client.post(f"/api/v1/work/package/{dtp.pk}/fail/", {
        "lease_token": job["lease_token"], "error": "unsafe member", "retryable": retryable}, format="json")


def members(dtp: DataTransferPackage) -> list[str]:
    return sorted(dtp.members.values_list("raw_package__name", flat=True))


def test_bundle_failed_for_its_content_is_split_in_two_and_cancelled(client):
    dtp = bundle_of(["raw-a.tar", "raw-b.tar", "raw-c.tar"])

    response = fail(client, dtp, retryable=False)

    dtp.refresh_from_db()
    halves = list(DataTransferPackage.objects.exclude(pk=dtp.pk).order_by("name"))
    assert response.status_code == 200
    assert response.json()["status"] == JobStatus.CANCELLED
    assert dtp.status == JobStatus.CANCELLED
    assert members(dtp) == []
    assert [(h.name, h.status, members(h), h.payload_size) for h in halves] == [
        ("dtp-ccat-1-a.tar", JobStatus.PENDING, ["raw-a.tar"], 10),
        ("dtp-ccat-1-b.tar", JobStatus.PENDING, ["raw-b.tar", "raw-c.tar"], 20),
    ]
    assert {(h.origin_location_id, h.archive_path) for h in halves} == {
        (dtp.origin_location_id, "bundles/dtp-ccat-1-a.tar"), (dtp.origin_location_id, "bundles/dtp-ccat-1-b.tar")}
    assert "split into dtp-ccat-1-a.tar and dtp-ccat-1-b.tar" in dtp.logs.latest("pk").message


def test_splitting_again_isolates_the_bad_member_and_the_good_ones_go_on(client):
    bundle_of(["raw-a.tar", "raw-b.tar", "raw-c.tar", "raw-d.tar"])
    bad = "raw-c.tar"

    # The worker claims bundles in turn; each containing the bad member fails, the others are built.
    for _ in range(10):
        job = client.post(CLAIM, {"worker": "w1", "kinds": ["package"]}, format="json")
        if job.status_code == 204:
            break
        body = job.json()
        names = [m["name"] for m in body["members"]]
        url = f"/api/v1/work/package/{body['id']}/"
        if bad in names:
            client.post(url + "fail/", {"lease_token": body["lease_token"], "error": "x", "retryable": False},
                        format="json")
        else:
            client.post(url + "complete/", {"lease_token": body["lease_token"], "size": 1, "checksum": "ab"},
                        format="json")

    done = DataTransferPackage.objects.filter(status=JobStatus.COMPLETED)
    failed = DataTransferPackage.objects.get(status=JobStatus.FAILED)
    assert sorted(n for d in done for n in members(d)) == ["raw-a.tar", "raw-b.tar", "raw-d.tar"]
    assert members(failed) == [bad]
    assert DataTransferPackageMember.objects.count() == 4


def test_bundle_of_one_failed_for_its_content_stays_failed_for_an_operator(client):
    dtp = bundle_of(["raw-a.tar"])

    fail(client, dtp, retryable=False)

    dtp.refresh_from_db()
    assert dtp.status == JobStatus.FAILED
    assert members(dtp) == ["raw-a.tar"]
    assert DataTransferPackage.objects.count() == 1


def test_bundle_whose_retryable_failures_spent_its_attempts_is_not_split(client, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    dtp = bundle_of(["raw-a.tar", "raw-b.tar"])

    fail(client, dtp, retryable=True)

    dtp.refresh_from_db()
    assert dtp.status == JobStatus.FAILED
    assert members(dtp) == ["raw-a.tar", "raw-b.tar"]
    assert DataTransferPackage.objects.count() == 1


def test_retryable_failure_of_a_bundle_keeps_it_whole(client):
    dtp = bundle_of(["raw-a.tar", "raw-b.tar"])

    fail(client, dtp, retryable=True)

    dtp.refresh_from_db()
    assert dtp.status == JobStatus.PENDING
    assert DataTransferPackage.objects.count() == 1
