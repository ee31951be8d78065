"""Two schedulers and many deleting workers at once: nothing is deleted twice, never the last copy."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django_fsm_log.models import StateLog

from custody.models import DeletionItem, DeletionOutcome
from custody.planning import plan_deletions
from opsdb.choices import CopyStatus, LocationType
from opsdb.models import RawDataPackage, RawDataPackageCopy
from tests.apiclient import token_client, worker
from tests.custody.scenario import deliver, policy, world

CLAIM = "/api/v1/work/claim/"


def scheduler(ticks: int, errors: list):
    try:
        for _ in range(ticks):
            with transaction.atomic():  # no leader lock: the passes themselves must not hand a copy out twice
                plan_deletions(now=timezone.now())
            time.sleep(0.05)
    except Exception as exc:  # reported by the test
        errors.append(f"scheduler: {exc!r}")
    finally:
        connection.close()


def deleter(client, name: str, stop: threading.Event, deleted: list, errors: list):
    try:
        idle = 0
        while idle < 20:
            response = client.post(CLAIM, {"worker": name, "kinds": ["delete"]}, format="json")
            if response.status_code == 204:
                idle += 1 if stop.is_set() else 0
                time.sleep(0.02)
                continue
            if response.status_code != 200:
                errors.append((name, response.status_code, response.content[:300]))
                return
            idle = 0
            job = response.json()
            deleted.extend(c["id"] for c in job["copies"])
            report = client.post(f"/api/v1/work/delete/{job['id']}/complete/", {
                "lease_token": job["lease_token"],
                "copies": [{"id": c["id"], "outcome": "deleted"} for c in job["copies"]]}, format="json")
            if report.status_code != 200:
                errors.append((name, report.status_code, report.content[:300]))
    except Exception as exc:
        errors.append(f"{name}: {exc!r}")
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_and_eight_deleting_workers(settings):
    settings.DELETE_JOB_MAX_COPIES = 5
    w = world(packages=60)
    deliver(w, w.cologne)
    deliver(w, w.cornell)
    for site in (w.cologne, w.cornell):
        policy(site.buffer)
    buffer_copies = RawDataPackageCopy.objects.filter(location__location_type=LocationType.BUFFER).count()
    clients = [(token_client(worker(f"d{i}")), f"d{i}") for i in range(8)]
    stop, deleted, errors = threading.Event(), [], []
    threads = [threading.Thread(target=scheduler, args=(8, errors)) for _ in range(2)]
    workers = [threading.Thread(target=deleter, args=(c, n, stop, deleted, errors)) for c, n in clients]

    for thread in threads + workers:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stop.set()
    for thread in workers:
        thread.join(timeout=300)

    assert errors == []
    # each copy was handed to a worker once, and marked deleted once
    items = DeletionItem.objects.filter(outcome=DeletionOutcome.DELETED).values("raw_package_copy").annotate(
        n=Count("pk"))
    assert {row["n"] for row in items} <= {1}
    marks = StateLog.objects.filter(transition="mark_deleted").values("object_id", "content_type").annotate(
        n=Count("pk"))
    assert {row["n"] for row in marks} == {1}
    assert len(deleted) == len(set(deleted))
    assert RawDataPackageCopy.objects.filter(location__location_type=LocationType.BUFFER,
                                             status=CopyStatus.DELETED).count() == buffer_copies
    # never the last copy: every package keeps its verified archive copies
    for package in RawDataPackage.objects.all():
        assert package.copies.verified().filter(location__location_type=LocationType.LONG_TERM_ARCHIVE).count() == 2
