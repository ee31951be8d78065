"""Results come home: a data product registered at a processing area is archived into its site's archive.

Registered through the ingest API (as a pipeline would), planned by the scheduler's archiving pass,
copied by the reference worker from the processing area into the long-term archive, real files.
"""

import io
import tarfile

import pytest
from django.utils import timezone

from opsdb.choices import JobStatus
from opsdb.custody import raw_package_custody
from opsdb.models import RawDataPackage, RawDataPackageCopy
from staging.models import LongTermArchiveTransfer
from staging.planning import plan_archive_transfers
from tests.apiclient import worker_client
from tests.worker.conftest import file_sha256, sha256

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def write_product(topo, relative: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    content = buffer.getvalue()
    path = topo.path(topo.cologne_processing, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return content


def test_worker_archives_a_data_product_registered_at_the_processing_area(topology, launcher):
    topo = topology
    files = {"map.fits": b"reduced map " * 1000, "catalogue.csv": b"ra,dec\n1,2\n"}
    content = write_product(topo, "products/orion-map-v1.tar", files)
    ingest = {
        "name": "orion-map-v1.tar", "size": len(content), "checksum": sha256(content),
        "observation": {"obs_id": "obs-product-1", "instrument": "Prime-Cam", "target_name": "Orion-KL",
                        "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-01T01:00:00Z"},
        "files": [{"relative_path": name, "size": len(data), "checksum": sha256(data)} for name, data in files.items()],
        "location": {"site": "cologne", "name": topo.cologne_processing.name}, "path": "products/orion-map-v1.tar",
    }

    assert worker_client("pipeline").post("/api/v1/ingest/raw-packages/", ingest, format="json").status_code == 201
    assert plan_archive_transfers(now=timezone.now()).count == 1
    run = launcher.run("--once", "--kinds", "archive")

    job = LongTermArchiveTransfer.objects.get()
    assert job.status == JobStatus.COMPLETED, (job.last_error, run.stdout, run.stderr)
    assert job.source_location == topo.cologne_processing
    product = RawDataPackage.objects.get(name="orion-map-v1.tar")
    archived = RawDataPackageCopy.objects.get(raw_package=product, location=topo.cologne_archive)
    assert file_sha256(topo.path(topo.cologne_archive, archived.path)) == product.checksum
    assert archived.checksum_verified == product.checksum
    custody = raw_package_custody(product)
    assert (custody.required_archive_sites, custody.is_safe) == (["cologne"], True)
