"""The operations dashboard at /ops/: who may open it, what it shows, at a fixed number of queries."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from operations.dashboard import human_duration
from operations.history import record_history
from opsdb.models import ApiToken, DataLocation, RawDataPackage
from opsdb.registry import job_kinds
from opsdb.services import job_claim, job_fail
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests import topology as t
from tests.apiclient import ensure_role_groups, worker
from transfers.models import DataTransfer, DataTransferRoute

pytestmark = pytest.mark.django_db

URL = "/ops/"


@pytest.fixture
def operator_client(client):
    ensure_role_groups()
    client.force_login(f.operator())
    return client


def world(n: int, now=None):
    """ccat → n destinations; per route a transferred, a failing and a pending transfer; a worker per site."""
    now = now or timezone.now()
    ccat = t.site("ccat", archive=False)
    for k in range(n):
        destination = t.site(f"dest{k}")
        destination.buffer.capacity_bytes = 100 * t.GB
        destination.buffer.save()
        route = t.direct(ccat, destination)

        def transfer(size, route=route, destination=destination):
            bundle = f.DataTransferPackageFactory(origin_location=ccat.buffer, payload_size=size)
            return f.DataTransferFactory(transfer_package=bundle, route=route, origin_location=ccat.buffer,
                                         destination_location=destination.buffer)

        t.arrive(transfer(7 * t.GB))
        job = job_claim(job=transfer(t.GB), worker="ccat-dtn-1")
        job_fail(job=job, lease_token=job.lease_token, error="No space left on device", retryable=False)
        transfer(2 * t.GB)
        archive = f.LongTermArchiveTransferFactory(source_location=destination.buffer,
                                                   destination_location=destination.archive)
        t.finish(archive)
        f.RawDataPackageCopyFactory(raw_package=archive.raw_package, location=destination.archive,
                                    checksum_verified=archive.raw_package.checksum)
        user = worker(f"dest{k}-dtn-1", sites=[destination.site])
        ApiToken.objects.create(user=user, prefix="p", digest=f"digest-{k}", last_used_at=now)
    t.waiting(ccat.buffer, size=3 * t.GB)
    record_history(now=now)
    return ccat


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_scientists_are_refused(client):
    ensure_role_groups()
    client.force_login(f.scientist())

    assert client.get(URL).status_code == 403


def test_workers_are_refused(client):
    client.force_login(worker("w1"))

    assert client.get(URL).status_code == 403


def test_the_dashboard_refuses_writes(operator_client):
    assert operator_client.post(URL).status_code == 405


def test_the_dashboard_opens_on_an_empty_database(operator_client):
    response = operator_client.get(URL)

    assert response.status_code == 200
    assert b"No routes yet." in response.content
    assert b"Nothing is stuck" in response.content


def test_the_dashboard_shows_routes_sites_storage_safety_and_causes(operator_client):
    world(1)

    content = operator_client.get(URL).content.decode()

    assert "ccat-&gt;dest0" in content
    assert "dest0-dtn-1" in content
    assert "dest0:buffer" in content and "100.0 GB" in content
    assert "No space left on device × 1 at ccat:buffer" in content
    assert "Oldest raw package not yet safe" in content
    assert content.count('class="ops-chart"') == 6  # throughput and backlog per route, buffer fill; 24 h and 7 days


def test_unpack_failures_are_grouped_at_their_destination(operator_client):
    world(1)
    moved = DataTransfer.objects.get(transfer_package__payload_size=7 * t.GB)
    unpack = job_claim(job=f.DataTransferUnpackFactory(transfer=moved), worker="dest0-dtn-1")
    job_fail(job=unpack, lease_token=unpack.lease_token, error="tar: unexpected end of file", retryable=False)

    response = operator_client.get(URL)

    [group] = [g for g in response.context["failures"] if g["kind"] == "unpack"]
    assert (group["cause"], group["count"], group["where"]) == ("tar: unexpected end of file", 1, "dest0:buffer")
    destination = DataLocation.objects.get(site__name="dest0", name="buffer")
    assert f"transfer__destination_location__id__exact={destination.pk}" in group["url"]
    assert response.context["failures_partial"] == []


def test_failures_are_grouped_over_the_latest_with_the_total_shown(operator_client, monkeypatch):
    monkeypatch.setattr("operations.dashboard.FAILURES_READ", 2)
    ccat = world(1)
    [route] = DataTransferRoute.objects.all()
    destination = DataLocation.objects.get(site__name="dest0", name="buffer")
    for error in ("bbcp: connection reset", "bbcp: connection reset"):  # after the world's "No space left"
        job = job_claim(job=f.DataTransferFactory(route=route, origin_location=ccat.buffer,
                                                  destination_location=destination), worker="ccat-dtn-1")
        job_fail(job=job, lease_token=job.lease_token, error=error, retryable=False)

    response = operator_client.get(URL)

    transfers = [(g["cause"], g["count"]) for g in response.context["failures"] if g["kind"] == "transfer"]
    assert transfers == [("bbcp: connection reset", 2)]
    [partial] = response.context["failures_partial"]
    assert (partial["kind"], partial["total"], partial["grouped"]) == ("transfer", 3, 2)
    assert "transfer: <a href=\"/admin/transfers/datatransfer/?status__exact=FAILED\">3 waiting in all</a>; " \
           "the causes above are those of the latest 2." in response.content.decode()


def test_route_rates_come_from_the_history(operator_client):
    world(1)

    response = operator_client.get(URL)

    [row] = response.context["routes"]
    assert (row.queue["queued_jobs"], row.queue["queued_bytes"], row.queue["failed_jobs"]) == (1, 2 * t.GB, 1)
    assert row.hour.succeeded == 1
    assert row.hour.bytes_done == 7 * t.GB
    assert row.hour.success_rate == 0.5
    assert row.drain == human_duration(2 * t.GB / (7 * t.GB / 3600))


def test_time_to_safety_and_oldest_unsafe(operator_client):
    world(1)
    waiting = RawDataPackage.objects.filter(bundled=False, archive_transfers__isnull=True).get()

    response = operator_client.get(URL)

    assert response.context["safety"]["day"]["packages"] == 1
    assert response.context["oldest_unsafe"].raw_package == waiting


def test_an_archived_package_is_not_unsafe(operator_client):
    world(1)
    RawDataPackage.objects.filter(bundled=False, archive_transfers__isnull=True).delete()
    record_history(now=timezone.now() + timedelta(minutes=5))  # the next 5-minute check

    response = operator_client.get(URL)

    assert response.context["oldest_unsafe"].raw_package is None
    assert response.context["oldest_unsafe"].registered_at is None
    assert "none: every raw package is archived" in response.content.decode()
    assert LongTermArchiveTransfer.objects.exists()


def test_stuck_work_is_spelled_out(operator_client, settings):
    settings.STUCK_PENDING_SECONDS = 3600
    site = t.site("cologne")
    old = f.LongTermArchiveTransferFactory(source_location=site.buffer, destination_location=site.archive)
    LongTermArchiveTransfer.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    held = job_claim(job=f.LongTermArchiveTransferFactory(source_location=site.buffer,
                                                          destination_location=site.archive), worker="w1")
    LongTermArchiveTransfer.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))

    content = operator_client.get(URL).content.decode()

    assert "1 long term archive transfer, due since " in content and "not claimed" in content
    assert "1 long term archive transfer with a lease run out since " in content
    assert "Stalled site: cologne" in content


def test_a_buffer_above_its_high_watermark_is_marked(operator_client):
    site = t.site("cornell")
    DataLocation.objects.filter(pk=site.buffer.pk).update(capacity_bytes=10 * t.GB, high_watermark_percent=80,
                                                          low_watermark_percent=60)
    t.waiting(site.buffer, size=9 * t.GB)
    record_history(now=timezone.now())

    response = operator_client.get(URL)

    [state] = [s for s in response.context["locations"] if s.location.pk == site.buffer.pk]
    assert (state.high_watermark_bytes, state.low_watermark_bytes) == (8 * t.GB, 6 * t.GB)
    assert state.above_high_watermark
    content = response.content.decode()
    assert "60 % / 80 %" in content and "above high watermark" in content
    assert 'stroke-dasharray="4 3"><title>high watermark 80 %</title>' in content


def test_the_admin_header_and_index_link_to_the_dashboard(operator_client):
    index = operator_client.get(reverse("admin:index")).content.decode()
    other = operator_client.get(reverse("admin:opsdb_site_changelist")).content.decode()

    assert 'id="ops-dashboard-link" href="/ops/"' in index.replace('href="/ops/" id="ops-dashboard-link"',
                                                                     'id="ops-dashboard-link" href="/ops/"')
    assert 'href="/ops/"' in other
    assert 'id="ops-dashboard-index-link"' in index


@pytest.mark.parametrize("n", [1, 3])
def test_the_dashboard_costs_a_fixed_number_of_queries(operator_client, django_assert_num_queries, n):
    world(n, now=timezone.now() - timedelta(minutes=10))
    record_history(now=timezone.now())
    operator_client.get(URL)  # content types and the session's user cached, as in a running server

    with django_assert_num_queries(QUERIES_PER_PAGE):
        assert operator_client.get(URL).status_code == 200


# 18 plus 3 per declared job kind (its pending and active jobs, its failures by cause)
QUERIES_PER_PAGE = 18 + 3 * len(job_kinds)
