"""The archive job kind through the work API."""

import pytest
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus
from staging.models import LongTermArchiveTransfer
from staging.planning import plan_archive_transfers
from tests import factories as f
from tests.apiclient import worker_client
from tests.topology import site

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return worker_client()


def claim(client):
    return client.post("/api/v1/work/claim/", {"worker": "w1", "kinds": ["archive"]}, format="json")


def report(client, job_id, action, body):
    return client.post(f"/api/v1/work/archive/{job_id}/{action}/", body, format="json")


def test_archive_complete_records_copy_at_the_archive(client):
    job = f.LongTermArchiveTransferFactory()
    claimed = claim(client).json()

    response = report(client, job.pk, "complete", {"lease_token": claimed["lease_token"],
                                                   "checksum": job.raw_package.checksum, "path": "raw/x.tar"})

    copy = job.raw_package.copies.get()
    assert response.json()["status"] == "COMPLETED"
    assert (copy.location, copy.path) == (job.destination_location, "raw/x.tar")


def test_archive_complete_checksum_mismatch_is_400_and_nothing_recorded(client):
    job = f.LongTermArchiveTransferFactory()
    claimed = claim(client).json()

    response = report(client, job.pk, "complete", {"lease_token": claimed["lease_token"], "checksum": "ee" * 32})

    job.refresh_from_db()
    assert response.status_code == 400
    assert "checksum" in response.json()
    assert job.status == JobStatus.ACTIVE
    assert not job.raw_package.copies.exists()


def test_archive_three_failed_attempts_need_an_operator(client):
    job = f.LongTermArchiveTransferFactory()
    statuses = []
    for attempt in range(3):
        LongTermArchiveTransfer.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())  # backoff over
        claimed = claim(client).json()
        assert claimed["attempt"] == attempt + 1
        statuses.append(report(client, job.pk, "fail", {"lease_token": claimed["lease_token"],
                                                         "error": "tape offline"}).json()["status"])

    job.refresh_from_db()
    assert statuses == ["PENDING", "PENDING", "FAILED"]
    assert job.requires_intervention is True
    assert claim(client).status_code == 204


def test_archive_of_a_data_product_reads_the_path_it_was_registered_with():
    cologne = site("cologne", processing=True)
    product = f.RawDataPackageCopyFactory(location=cologne.processing, path="products/map-v2.tar").raw_package
    other = f.RawDataPackageCopyFactory(location=cologne.buffer, path="raw/other.tar")  # another package, same site
    f.RawDataPackageCopyFactory(raw_package=product, location=cologne.archive, path="x", status=CopyStatus.DELETED)
    plan_archive_transfers(now=timezone.now())
    client = worker_client()

    jobs = [claim(client).json() for _ in range(2)]

    paths = {job["raw_package"]["name"]: (job["source"]["path"], job["destination"]["path"]) for job in jobs}
    assert paths == {product.name: ("products/map-v2.tar", f"raw/{product.name}"),
                     other.raw_package.name: ("raw/other.tar", f"raw/{other.raw_package.name}")}
