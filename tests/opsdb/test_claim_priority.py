"""The claim-priority rule between job kinds (``opsdb.services.claim_for_worker``, settings.JOB_KINDS).

A job's claim deadline is the time it became due plus its kind's position in JOB_KINDS times
JOB_CLAIM_KIND_STEP_SECONDS; a worker serving several kinds gets the earliest deadline.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from opsdb.choices import JobStatus, LocationType
from opsdb.models import RawDataPackage
from opsdb.registry import job_kinds
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.apiclient import worker_client

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"
STEP = timedelta(hours=1)


@pytest.fixture(autouse=True)
def one_hour_step(settings):
    settings.JOB_CLAIM_KIND_STEP_SECONDS = int(STEP.total_seconds())


def claim(client, **body):
    response = client.post(CLAIM, {"worker": "w1", **body}, format="json")
    assert response.status_code in (200, 204), response.content
    return response.json() if response.status_code == 200 else None


def archive_backlog(count: int, *, oldest: timedelta) -> list[int]:
    """``count`` pending archive jobs at one buffer, created evenly over the last ``oldest``."""
    source = f.DataLocationFactory(location_type=LocationType.BUFFER)
    archive = f.DataLocationFactory(site=source.site, location_type=LocationType.LONG_TERM_ARCHIVE)
    observation = f.ObservationFactory()
    packages = RawDataPackage.objects.bulk_create([
        RawDataPackage(observation=observation, name=f"backlog-{n:05d}.tar", size=1, checksum=f"{n:064x}")
        for n in range(count)
    ])
    now = timezone.now()
    jobs = LongTermArchiveTransfer.objects.bulk_create([
        LongTermArchiveTransfer(raw_package=package, source_location=source, destination_location=archive,
                                created_at=now - oldest + oldest * n / count)
        for n, package in enumerate(packages)
    ])
    return [job.pk for job in jobs]


def test_the_declared_order_puts_stage_first_and_bulk_work_downstream_first():
    assert job_kinds.kinds() == ["stage", "archive", "unpack", "transfer", "package", "delete", "verify"]


def test_a_new_stage_job_is_claimed_before_5000_pending_archive_jobs():
    backlog = archive_backlog(5000, oldest=timedelta(minutes=50))
    stage = f.StagingJobFactory()
    client = worker_client()

    first = claim(client, kinds=["archive", "stage"])
    second = claim(client, kinds=["archive", "stage"])

    assert (first["kind"], first["id"]) == ("stage", stage.pk)
    assert (second["kind"], second["id"]) == ("archive", backlog[0])  # then the backlog, oldest first


def test_a_new_stage_job_is_claimed_first_by_a_worker_serving_every_kind():
    archive_backlog(5000, oldest=timedelta(minutes=50))
    stage = f.StagingJobFactory()

    claimed = claim(worker_client())

    assert (claimed["kind"], claimed["id"]) == ("stage", stage.pk)


def test_a_later_kind_is_passed_over_for_at_most_its_steps():
    """An archive job (position 1) due more than one step before a stage job goes first: never starved."""
    [waited] = archive_backlog(1, oldest=STEP + timedelta(minutes=5))
    f.StagingJobFactory()
    client = worker_client()

    claimed = claim(client, kinds=["stage", "archive"])

    assert (claimed["kind"], claimed["id"]) == ("archive", waited)


def test_an_archive_backlog_does_not_starve_transfers_for_ever():
    """Transfers (position 3) wait at most two steps behind archive work (position 1)."""
    transfer = f.DataTransferFactory(created_at=timezone.now() - 2 * STEP - timedelta(minutes=5))
    archive_backlog(50, oldest=timedelta(minutes=1))

    claimed = claim(worker_client(), kinds=["archive", "transfer"])

    assert (claimed["kind"], claimed["id"]) == ("transfer", transfer.pk)


def test_a_retried_job_is_due_from_the_end_of_its_backoff():
    """A job that failed long ago but became due again just now ranks by when it became due."""
    [old] = archive_backlog(1, oldest=3 * STEP)
    LongTermArchiveTransfer.objects.filter(pk=old).update(attempts=1, next_attempt_at=timezone.now())
    stage = f.StagingJobFactory()

    claimed = claim(worker_client(), kinds=["archive", "stage"])

    assert (claimed["kind"], claimed["id"]) == ("stage", stage.pk)


def test_jobs_due_together_are_claimed_in_the_declared_order():
    now = timezone.now() - timedelta(minutes=1)
    stage = f.StagingJobFactory(created_at=now)
    archive = f.LongTermArchiveTransferFactory(created_at=now)
    package = f.DataTransferPackageFactory(created_at=now)
    client = worker_client()

    claimed = [claim(client) for _ in range(4)]

    assert [(c["kind"], c["id"]) for c in claimed[:3]] == [
        ("stage", stage.pk), ("archive", archive.pk), ("package", package.pk)
    ]
    assert claimed[3] is None


def test_with_a_zero_step_the_oldest_due_job_of_any_kind_goes_first(settings):
    settings.JOB_CLAIM_KIND_STEP_SECONDS = 0
    [archive] = archive_backlog(1, oldest=timedelta(minutes=2))
    f.StagingJobFactory()

    claimed = claim(worker_client(), kinds=["stage", "archive"])

    assert (claimed["kind"], claimed["id"]) == ("archive", archive)


def test_a_kind_with_nothing_claimable_lets_the_next_kind_through():
    """The ranking reads the kinds' claimable jobs: a full route's transfers do not block the archive job."""
    route = f.RouteFactory(max_concurrent=1)
    f.DataTransferFactory(route=route, status=JobStatus.ACTIVE, lease_expires_at=timezone.now() + STEP)
    f.DataTransferFactory(route=route, created_at=timezone.now() - 4 * STEP)
    archive = f.LongTermArchiveTransferFactory()

    claimed = claim(worker_client(), kinds=["transfer", "archive"])

    assert (claimed["kind"], claimed["id"]) == ("archive", archive.pk)


def test_an_idle_claim_of_several_kinds_costs_one_query_per_kind(django_assert_num_queries):
    client = worker_client()
    claim(client, kinds=["archive"])  # its first request reads and caches the token, roles and sites

    # one look for a due job per kind (the cached token costs nothing); no claim transaction is opened
    with django_assert_num_queries(3):
        assert claim(client, kinds=["stage", "archive", "package"]) is None


def test_a_kind_that_is_not_served_is_refused():
    response = worker_client().post(CLAIM, {"worker": "w1", "kinds": ["archive", "teleport"]}, format="json")

    assert response.status_code == 400
    assert "teleport" in str(response.json()["kinds"])
