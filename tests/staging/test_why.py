"""A scientist's request says why it waits: "Waiting since 17:15 (3 min): …" on its page and in the list."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from opsdb.explanation import clock
from opsdb.models import ApiToken, WorkerProfile
from opsdb.services import job_claim, job_fail
from staging.models import StagingJob
from staging.services import staging_job_create
from tests import factories as f

pytestmark = pytest.mark.django_db

LIST = reverse("staging:request-list")


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


def make_job(owner, topology):
    return staging_job_create(owner=owner, raw_packages=topology.packages,
                              destination_location=topology.cologne_processing)


def cologne_worker(topology, last_seen):
    user = f.worker_user("cologne-dtn-1")
    WorkerProfile.objects.create(user=user).sites.set([topology.cologne_processing.site])
    ApiToken.objects.create(user=user, prefix="opsdb_c", digest="c" * 64, last_used_at=last_seen)


def backdate(job, minutes: int) -> StagingJob:
    StagingJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(minutes=minutes))
    return StagingJob.objects.get(pk=job.pk)


def detail(client, job) -> str:
    return client.get(reverse("staging:request-detail", args=[job.pk])).content.decode()


def test_waiting_request_says_since_when_and_that_the_site_worker_is_silent(client_alice, topology, alice):
    last = timezone.now() - timedelta(minutes=47)
    cologne_worker(topology, last)
    job = backdate(make_job(alice, topology), 3)

    page = detail(client_alice, job)

    assert f"Waiting since {clock(job.updated_at)} (3 min)</span>: No worker serving cologne has been seen for " \
           f"47 min (cologne-dtn-1 last seen {clock(last)})." in page


def test_waiting_request_with_a_live_worker_says_it_waits_for_it(client_alice, topology, alice):
    cologne_worker(topology, timezone.now())
    make_job(alice, topology)

    listing = client_alice.get(LIST).content.decode()

    assert 'data-code="queued"' in listing
    assert "Waiting for a worker at cologne to claim it" in listing


def test_request_in_backoff_says_which_retry_comes_when(client_alice, topology, alice):
    job = job_claim(job=make_job(alice, topology), worker="cologne-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="No space left on device")

    page = detail(client_alice, job)

    assert f"Waiting since {clock(job.updated_at)}" in page
    assert f"Retry 2 of 5 at {clock(job.next_attempt_at)}, after “No space left on device”" in page


def test_running_request_says_since_when(client_alice, topology, alice):
    job = job_claim(job=make_job(alice, topology), worker="cologne-dtn-1")

    page = detail(client_alice, job)

    assert f"Running since {clock(job.claimed_at)}" in page
    assert "Being done by cologne-dtn-1" in page


def test_finished_request_shows_no_waiting_line(client_alice, topology, alice):
    job = make_job(alice, topology)
    job.cancel()
    job.save()

    assert 'class="why"' not in detail(client_alice, job)


def test_request_whose_worker_stopped_reporting_is_stalled(client_alice, topology, alice):
    job = job_claim(job=make_job(alice, topology), worker="cologne-dtn-1")
    StagingJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=4))

    page = detail(client_alice, job)

    assert "Stalled since " in page and "(4 min)</span>: cologne-dtn-1 stopped reporting" in page


def test_failed_request_says_an_operator_is_needed(client_alice, topology, alice):
    job = make_job(alice, topology)
    for _ in range(job.max_attempts()):
        StagingJob.objects.filter(pk=job.pk).update(next_attempt_at=None)
        job = job_claim(job=StagingJob.objects.get(pk=job.pk), worker="cologne-dtn-1")
        job, _ = job_fail(job=job, lease_token=job.lease_token, error="Permission denied")

    page = detail(client_alice, job)

    assert f"Stopped since {clock(job.finished_at)}" in page
    assert "Needs an operator after 5 failed attempts" in page
