"""Stuck work: unclaimed jobs, silent workers at sites with work, routes that cannot move waiting data."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from operations import selectors
from operations.stuck import attention_items, stalled_text, stuck_work
from opsdb.choices import JobStatus
from opsdb.models import ApiToken
from opsdb.registry import job_kinds
from opsdb.services import job_claim
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests import topology as t
from tests.apiclient import ensure_role_groups, worker
from transfers.choices import RouteState
from transfers.models import DataTransfer
from transfers.services import route_pause

pytestmark = pytest.mark.django_db


@pytest.fixture
def cologne():
    site = t.site("cologne")
    user = worker("cologne-dtn-1", sites=[site.site])
    token = ApiToken.objects.create(user=user, prefix="p", digest="d")
    return {"site": site, "token": token}


def seen(token, ago: timedelta):
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - ago)


def archive_job(site, *, age=timedelta(0)):
    job = f.LongTermArchiveTransferFactory(source_location=site.buffer, destination_location=site.archive)
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(created_at=timezone.now() - age)
    return job


def test_a_site_with_due_work_and_a_silent_worker_is_stalled(cologne, settings):
    settings.WORKER_SILENT_SECONDS = 600
    seen(cologne["token"], timedelta(minutes=47))
    archive_job(cologne["site"])

    stuck = stuck_work()

    [state] = stuck.stalled_sites
    assert state.site == cologne["site"].site
    assert state.waiting_jobs == 1
    assert stalled_text(state).startswith("No worker serving cologne seen for 47\xa0minutes (cologne-dtn-1 last "
                                          "seen ")


def test_a_site_whose_worker_was_seen_recently_is_not_stalled(cologne):
    seen(cologne["token"], timedelta(minutes=2))
    archive_job(cologne["site"])

    assert stuck_work().stalled_sites == []


def test_a_heartbeat_counts_as_seen(cologne):
    seen(cologne["token"], timedelta(hours=2))
    held = archive_job(cologne["site"])
    held = LongTermArchiveTransfer.objects.get(pk=held.pk)
    job_claim(job=held, worker="cologne-dtn-1", user=cologne["token"].user)
    archive_job(cologne["site"])

    [state] = [s for s in selectors.sites(timezone.now()) if s.site.name == "cologne"]

    assert not state.stalled
    assert state.workers[0].jobs_held == 1
    assert state.workers[0].names == {"cologne-dtn-1"}


def test_a_site_without_work_is_not_stalled(cologne):
    seen(cologne["token"], timedelta(days=3))

    assert stuck_work().stalled_sites == []


def test_a_site_that_no_worker_serves_is_stalled_when_work_waits():
    lonely = t.site("cornell")
    archive_job(lonely)

    [state] = stuck_work().stalled_sites

    assert "no worker account serves it" in stalled_text(state)


def test_a_worker_for_every_site_serves_each(cologne):
    seen(cologne["token"], timedelta(hours=1))
    anywhere = worker("roamer")
    ApiToken.objects.create(user=anywhere, prefix="q", digest="e", last_used_at=timezone.now())
    archive_job(cologne["site"])

    assert stuck_work().stalled_sites == []


def test_waiting_links_open_the_jobs_at_the_site(cologne, client):
    ensure_role_groups()
    archive_job(cologne["site"])
    [state] = [s for s in selectors.sites(timezone.now()) if s.waiting]
    client.force_login(f.operator())

    [link] = state.waiting_links()
    response = client.get(link["url"])

    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


def test_jobs_due_longer_than_the_threshold_and_not_claimed_are_stuck(cologne, settings):
    settings.STUCK_PENDING_SECONDS = 3600
    archive_job(cologne["site"], age=timedelta(hours=2))
    archive_job(cologne["site"], age=timedelta(minutes=5))

    [unclaimed] = stuck_work().unclaimed

    assert unclaimed.handler.kind == "archive"
    assert unclaimed.jobs == 1


def test_a_job_in_backoff_is_not_stuck(cologne, settings):
    settings.STUCK_PENDING_SECONDS = 3600
    job = archive_job(cologne["site"], age=timedelta(hours=2))
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert stuck_work().unclaimed == []


def test_a_paused_route_with_waiting_transfers_cannot_move_data(cologne):
    ccat = t.site("ccat", archive=False)
    route = t.direct(ccat, cologne["site"])
    f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne["site"].buffer)
    route_pause(route=route, reason="firewall change", by=f.operator())

    [blocked] = stuck_work().blocked_routes

    assert blocked.route == route
    assert blocked.route.state == RouteState.PAUSED_MANUAL
    assert "firewall change" in blocked.text()
    assert blocked.queued_jobs == 1


def test_an_inactive_route_with_waiting_transfers_cannot_move_data(cologne):
    ccat = t.site("ccat", archive=False)
    route = t.direct(ccat, cologne["site"], active=False)
    f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne["site"].buffer)

    [blocked] = stuck_work().blocked_routes

    assert "inactive" in blocked.text()


def test_a_paused_route_without_waiting_data_is_not_listed(cologne):
    ccat = t.site("ccat", archive=False)
    route = t.direct(ccat, cologne["site"])
    route_pause(route=route, reason="maintenance", by=f.operator())

    assert stuck_work().blocked_routes == []


def test_expired_leases_are_listed(cologne):
    job = archive_job(cologne["site"])
    job_claim(job=job, worker="cologne-dtn-1")
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=3))

    [expired] = stuck_work().expired_leases

    assert expired.jobs == 1
    assert LongTermArchiveTransfer.objects.get(pk=job.pk).status == JobStatus.ACTIVE


def test_needs_attention_shows_each_kind_of_expired_lease_once(cologne, client):
    ensure_role_groups()
    for _ in range(2):
        job = archive_job(cologne["site"])
        job_claim(job=job, worker="cologne-dtn-1")
    LongTermArchiveTransfer.objects.update(lease_expires_at=timezone.now() - timedelta(minutes=3))
    client.force_login(f.operator())

    content = client.get(reverse("admin:index")).content.decode()

    assert content.count("Long term archive transfers with an expired lease</a>") == 1
    assert "2 long term archive transfers with a lease run out since " in content


def test_needs_attention_shows_stuck_work(cologne, client):
    ensure_role_groups()
    seen(cologne["token"], timedelta(hours=1))
    archive_job(cologne["site"], age=timedelta(hours=2))
    client.force_login(f.operator())

    content = client.get(reverse("admin:index")).content.decode()

    assert "Sites with work and no worker seen for 10 min" in content
    assert "No worker serving cologne seen for 1\xa0hour" in content
    assert "Jobs due for over 1 h and not claimed" in content


def test_attention_items_count_each_kind_of_stuck_work(cologne):
    seen(cologne["token"], timedelta(hours=1))
    archive_job(cologne["site"], age=timedelta(hours=2))

    counts = [item["count"] for item in attention_items()]

    assert counts == [1, 1, 0]


@pytest.mark.parametrize("n", [1, 3])
def test_stuck_work_costs_a_fixed_number_of_queries(django_assert_num_queries, n):
    for k in range(n):
        site = t.site(f"site{k}")
        archive_job(site, age=timedelta(hours=2))
        user = worker(f"w{k}", sites=[site.site])
        ApiToken.objects.create(user=user, prefix="p", digest=f"d{k}")
        route = t.direct(site, t.site(f"dest{k}"), active=False)
        f.DataTransferFactory(route=route, origin_location=site.buffer)
    assert DataTransfer.objects.count() == n

    with django_assert_num_queries(QUERIES):
        stuck = stuck_work()

    # each site, and the site of each factory-made bundle (its build waits there)
    assert (len(stuck.stalled_sites), len(stuck.blocked_routes), len(stuck.unclaimed)) == (2 * n, n, 1)


# 5 plus 2 per declared job kind (its pending and active jobs)
QUERIES = 5 + 2 * len(job_kinds)


@pytest.mark.parametrize("n", [1, 3])
def test_admin_index_costs_a_fixed_number_of_queries(cologne, client, n):
    ensure_role_groups()
    for k in range(n):
        archive_job(cologne["site"], age=timedelta(hours=2))
        job_claim(job=archive_job(cologne["site"]), worker=f"cologne-dtn-{k}")
        route = t.direct(t.site(f"ccat{k}"), cologne["site"], active=False)
        f.DataTransferFactory(route=route, origin_location=route.origin_site.locations.first())
    LongTermArchiveTransfer.objects.active().update(lease_expires_at=timezone.now() - timedelta(minutes=3))
    client.force_login(f.operator())
    client.get(reverse("admin:index"))  # the session and the content types are read once

    with CaptureQueriesContext(connection) as queries:
        content = client.get(reverse("admin:index")).content.decode()

    assert f"{n} long term archive transfer" in content
    assert len(queries) == INDEX_QUERIES, "\n".join(q["sql"][:150] for q in queries.captured_queries)


# The session, the user and its permissions (4); the panel's own rows: paused routes, bad and corrupt
# copies, held repairs, failed deletions of three kinds of copy and paused locations (2), each kind's jobs
# waiting for an operator (9 + kinds); stuck work and leases run out (5 + 2 per kind); the recent actions (1).
INDEX_QUERIES = 4 + 9 + len(job_kinds) + 5 + 2 * len(job_kinds) + 1
