"""A test double of a site worker for ``stage`` jobs: claims through the services, moves real files.

It stands in for the reference worker in the browser test: it claims with ``claim_next``, unpacks
each package's tar from the archive folder into the processing folder, reports progress with
``staging_items_mark_staged`` and completes with ``job_complete(apply=handler.apply_result)``.
(After the api branch is merged it can speak HTTP to /api/v1/work/ instead.)
"""

import hashlib
import tarfile
import threading
import time
from pathlib import Path

from django.db import connection

from opsdb.services import claim_next, job_complete
from opsdb.work import handler_for
from staging.services import staging_items_mark_staged


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stage_package(package: dict, destination_base: Path) -> dict:
    """Unpack one package's archive at the destination; the report entry with verified checksums."""
    source = Path(package["source"]["location"]["base_path"]) / package["source"]["path"]
    target = destination_base / package["destination_path"]
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source) as archive:
        archive.extractall(target, filter="data")
    files = [
        {"relative_path": f["relative_path"], "path": f"{package['destination_path']}/{f['relative_path']}",
         "checksum": sha256_of(target / f["relative_path"])}
        for f in package["files"]
    ]
    return {"name": package["name"], "files": files}


class StageWorkerDouble(threading.Thread):
    """Claims and does stage jobs at ``site_ids`` until stopped."""

    def __init__(self, site_ids: list[int], *, pause: float = 0.3):
        super().__init__(daemon=True)
        self.site_ids, self.pause = site_ids, pause
        self.stopping = threading.Event()
        self.done: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        handler = handler_for("stage")
        try:
            while not self.stopping.is_set():
                job = claim_next(queryset=handler.at_sites(handler.queryset(), self.site_ids), worker="test-double")
                if job is None:
                    time.sleep(self.pause)
                    continue
                self.do(handler, job)
        except BaseException as error:  # surfaced by the test, not lost in the thread
            self.errors.append(error)
        finally:
            connection.close()

    def do(self, handler, job) -> None:
        payload = handler.payload(handler.queryset().get(pk=job.pk))
        base = Path(payload["destination"]["location"]["base_path"])
        reports = []
        for package in payload["packages"]:
            reports.append(stage_package(package, base))
            staging_items_mark_staged(job=job, names=[package["name"]])
            time.sleep(self.pause)  # slow enough for a person (or a screenshot) to see progress
        report = {"packages": reports}
        job_complete(job=job, lease_token=job.lease_token, apply=lambda locked: handler.apply_result(locked, report))
        self.done.append(job.pk)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
