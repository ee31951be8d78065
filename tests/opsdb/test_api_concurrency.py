"""Many workers claiming and reporting at once through the API: every job done exactly once.

Each thread has its own API client and its own database connection (Django opens one per
thread), so the claims really race in the database: SKIP LOCKED on PostgreSQL, IMMEDIATE
transactions on SQLite.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus, LocationType
from opsdb.models import DataTransferLog, RawDataPackage
from opsdb.services import job_expire
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.apiclient import token_client, worker
from transfers.models import DataTransfer, DataTransferPackage

CLAIM = "/api/v1/work/claim/"


def archive_jobs(count: int) -> list[int]:
    """``count`` archive jobs at one site, created in bulk."""
    site = f.SiteFactory(name="ccat")
    buffer = f.DataLocationFactory(site=site, location_type=LocationType.BUFFER)
    archive = f.DataLocationFactory(site=site, location_type=LocationType.LONG_TERM_ARCHIVE)
    observation = f.ObservationFactory()
    raws = RawDataPackage.objects.bulk_create(
        RawDataPackage(name=f"raw-{i:05d}.tar", observation=observation, size=i, checksum=f"{i:064x}")
        for i in range(count)
    )
    jobs = LongTermArchiveTransfer.objects.bulk_create(
        LongTermArchiveTransfer(raw_package=raw, source_location=buffer, destination_location=archive) for raw in raws
    )
    return [job.pk for job in jobs]


def run_workers(count: int, loop) -> list:
    """Run ``loop(client, name, done, errors)`` in ``count`` threads, each its own worker; return errors."""
    clients = [token_client(worker(f"w{i}")) for i in range(count)]
    done: list = []
    errors: list = []

    def target(client, name):
        try:
            loop(client, name, done, errors)
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(c, f"w{i}")) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return done, errors


def claim_complete_loop(client, name, done, errors):
    while True:
        response = client.post(CLAIM, {"worker": name, "kinds": ["archive"]}, format="json")
        if response.status_code == 204:
            return
        if response.status_code != 200:
            errors.append((response.status_code, response.content[:200]))
            return
        job = response.json()
        report = client.post(f"/api/v1/work/archive/{job['id']}/complete/",
                             {"lease_token": job["lease_token"], "checksum": job["raw_package"]["checksum"]},
                             format="json")
        if report.status_code != 200:
            errors.append((report.status_code, report.content[:200]))
        done.append(job["id"])


def assert_each_done_once(job_ids: list[int], done: list[int], errors: list):
    assert errors == []
    assert sorted(done) == sorted(job_ids)  # none lost, none twice
    statuses = LongTermArchiveTransfer.objects.values_list("status").annotate(n=Count("pk"))
    assert dict(statuses) == {JobStatus.COMPLETED: len(job_ids)}
    claims = StateLog.objects.filter(transition="claim").values("object_id").annotate(n=Count("pk"))
    assert {row["n"] for row in claims} == {1}
    assert claims.count() == len(job_ids)
    assert DataTransferLog.objects.filter(message__contains="completed").count() == len(job_ids)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_32_workers_on_1000_jobs_do_each_exactly_once_on_postgres():
    job_ids = archive_jobs(1000)

    done, errors = run_workers(32, claim_complete_loop)

    assert_each_done_once(job_ids, done, errors)


@pytest.mark.django_db(transaction=True)
def test_8_workers_on_120_jobs_do_each_exactly_once():
    job_ids = archive_jobs(120)

    done, errors = run_workers(8, claim_complete_loop)

    assert_each_done_once(job_ids, done, errors)


@pytest.mark.django_db(transaction=True)
def test_route_limit_holds_under_concurrent_claims():
    route = f.RouteFactory(max_concurrent=3)
    origin = f.DataLocationFactory(site=route.origin_site)
    destination = f.DataLocationFactory(site=route.destination_site)
    packages = DataTransferPackage.objects.bulk_create(
        DataTransferPackage(name=f"dtp-{i}.tar", origin_location=origin, archive_path=f"bundles/dtp-{i}.tar",
                            checksum="ab", size=1)
        for i in range(40)
    )
    DataTransfer.objects.bulk_create(
        DataTransfer(transfer_package=p, route=route, origin_location=origin, destination_location=destination,
                     method=route.method)
        for p in packages
    )
    seen_active: list[int] = []
    deadline = time.monotonic() + 120

    def loop(client, name, done, errors):
        while time.monotonic() < deadline:
            response = client.post(CLAIM, {"worker": name, "kinds": ["transfer"]}, format="json")
            if response.status_code == 204:
                if not DataTransfer.objects.exclude(status=JobStatus.TRANSFERRED).exists():
                    return
                time.sleep(0.005)  # the route is full for now: come back, as a worker would
                continue
            job = response.json()
            seen_active.append(DataTransfer.objects.filter(route=route, status=JobStatus.ACTIVE).count())
            time.sleep(0.002)
            client.post(f"/api/v1/work/transfer/{job['id']}/complete/",
                        {"lease_token": job["lease_token"], "checksum": "ab"}, format="json")
            done.append(job["id"])

    done, errors = run_workers(12, loop)

    assert errors == []
    assert len(done) == len(set(done)) == 40
    assert max(seen_active) <= 3
    assert set(DataTransfer.objects.values_list("status", flat=True)) == {JobStatus.TRANSFERRED}


@pytest.mark.django_db(transaction=True)
def test_lease_expired_mid_job_late_complete_is_409_and_another_worker_redoes_it():
    [job_id] = archive_jobs(1)
    slow, fast = token_client(worker("slow")), token_client(worker("fast"))
    first = slow.post(CLAIM, {"worker": "slow", "lease_seconds": 30}, format="json").json()
    checksum = first["raw_package"]["checksum"]
    # The slow worker's lease runs out (no heartbeat) and the scheduler's expiry pass reclaims the job.
    LongTermArchiveTransfer.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    late_before_expiry = slow.post(f"/api/v1/work/archive/{job_id}/complete/",
                                   {"lease_token": first["lease_token"], "checksum": checksum}, format="json")
    assert job_expire(job=LongTermArchiveTransfer.objects.get(pk=job_id)) is True
    LongTermArchiveTransfer.objects.filter(pk=job_id).update(next_attempt_at=timezone.now())  # backoff over

    second = fast.post(CLAIM, {"worker": "fast"}, format="json").json()
    late = slow.post(f"/api/v1/work/archive/{job_id}/complete/",
                     {"lease_token": first["lease_token"], "checksum": checksum}, format="json")
    redone = fast.post(f"/api/v1/work/archive/{job_id}/complete/",
                       {"lease_token": second["lease_token"], "checksum": checksum}, format="json")

    job = LongTermArchiveTransfer.objects.get(pk=job_id)
    assert (late_before_expiry.status_code, late_before_expiry.json()["status"]) == (409, "ACTIVE")
    assert (second["id"], second["attempt"]) == (job_id, 2)
    assert (late.status_code, late.json()["status"]) == (409, "ACTIVE")
    assert redone.status_code == 200
    assert (job.status, job.attempts, job.lease_holder) == (JobStatus.COMPLETED, 1, "fast")
    assert job.raw_package.copies.count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_package_ingested_by_8_at_once_is_one_package():
    f.DataLocationFactory(site=f.SiteFactory(name="ccat"), name="buffer")
    body = {
        "name": "raw-1.tar", "size": 30, "checksum": "ab" * 32,
        "observation": {"obs_id": "obs-1", "instrument": "Prime-Cam", "target_name": "Orion-KL",
                        "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-01T01:00:00Z"},
        "files": [{"relative_path": "scan-1.fits", "size": 10, "checksum": "01" * 32}],
        "location": {"site": "ccat", "name": "buffer"},
    }
    barrier = threading.Barrier(8)

    def loop(client, name, done, errors):
        barrier.wait()
        done.append(client.post("/api/v1/ingest/raw-packages/", body, format="json").status_code)

    codes, errors = run_workers(8, loop)

    assert errors == []
    assert sorted(codes) == [200] * 7 + [201]
    assert RawDataPackage.objects.count() == 1
    assert RawDataPackage.objects.get().files.count() == 1
