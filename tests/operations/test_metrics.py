"""/metrics: who may read it, what it says, at a fixed cost; the shipped dashboards use only what it exports."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from operations.history import record_history
from opsdb.choices import JobStatus, LocationType
from opsdb.models import ApiToken, RawDataPackage
from opsdb.registry import job_kinds
from opsdb.services import job_claim, job_fail
from tests import factories as f
from tests import topology as t
from tests.apiclient import worker

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"


def scrape(client, **extra) -> dict[str, list]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return {family.name: family.samples for family in text_string_to_metric_families(response.content.decode())}


def value(families, name, **labels) -> float:
    matches = [s.value for samples in families.values() for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_metrics_answer_loopback_without_a_token(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_metrics_answer_ipv6_loopback(client):
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_refuse_other_addresses_when_no_token_is_set(client, settings):
    settings.METRICS_BEARER_TOKEN = ""

    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 403


def test_metrics_refuse_a_proxied_request_from_loopback(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert response.status_code == 403


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer ", "Token s3cret-metrics-token", "s3cret",
                                    "Bearer s3cret-métrics-tökén", "Bearer \udcff"])
def test_metrics_need_the_bearer_token_from_elsewhere(client, settings, header):
    settings.METRICS_BEARER_TOKEN = "s3cret-metrics-token"
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}

    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_metrics_answer_the_bearer_token_from_elsewhere(client, settings):
    settings.METRICS_BEARER_TOKEN = "s3cret-metrics-token"

    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")

    assert response.status_code == 200


def test_metrics_refuse_writes(client):
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


def test_metrics_refuse_a_malformed_client_address(client):
    assert client.get("/metrics", REMOTE_ADDR="not-an-address").status_code == 403


def flow(n_routes: int):
    """``n_routes`` routes from ccat, each with a pending and a failed transfer; a worker seen 20 minutes ago."""
    ccat = t.site("ccat", archive=False)
    now = timezone.now()
    for n in range(n_routes):
        destination = t.site(f"dest{n}")
        route = t.direct(ccat, destination)
        bundle = f.DataTransferPackageFactory(origin_location=ccat.buffer, payload_size=7 * t.GB)
        f.DataTransferFactory(transfer_package=bundle, route=route, origin_location=ccat.buffer,
                              destination_location=destination.buffer)
        broken = f.DataTransferFactory(route=route, origin_location=ccat.buffer,
                                       destination_location=destination.buffer)
        for _ in range(5):
            job = job_claim(job=broken, worker="ccat-dtn-1")
            broken, _ = job_fail(job=job, lease_token=job.lease_token, error="No space left on device")
        destination.archive.capacity_bytes = 100 * t.GB
        destination.archive.save()
    user = worker("ccat-dtn-1", sites=[ccat.site])
    token = ApiToken.objects.create(user=user, prefix="p", digest=f"d{n_routes}")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now - timedelta(minutes=20))
    package = t.waiting(ccat.buffer, size=3 * t.GB, age=timedelta(hours=5))
    RawDataPackage.objects.filter(pk=package.pk).update(created_at=now - timedelta(hours=5))
    record_history(now=now)
    return ccat


def test_metrics_report_the_database_figures(client):
    flow(1)

    families = scrape(client)

    assert value(families, "opsdb_jobs", kind="transfer", status=JobStatus.PENDING) == 1
    assert value(families, "opsdb_jobs", kind="transfer", status=JobStatus.FAILED) == 1
    assert value(families, "opsdb_jobs", kind="stage", status=JobStatus.PENDING) == 0
    assert value(families, "opsdb_jobs_requiring_intervention", kind="transfer") == 1
    assert value(families, "opsdb_job_oldest_pending_seconds", kind="transfer") >= 0
    assert value(families, "opsdb_job_finished_total", kind="transfer", outcome="retried") == 4
    assert value(families, "opsdb_job_finished_total", kind="transfer", outcome="failed") == 1
    assert value(families, "opsdb_route_queued_bytes", route="ccat->dest0") == 7 * t.GB
    assert value(families, "opsdb_transfer_bytes_total", route="ccat->dest0") == 0
    assert value(families, "opsdb_location_used_bytes", location="ccat:buffer",
                 type=LocationType.BUFFER) == 3 * t.GB
    assert value(families, "opsdb_location_capacity_bytes", location="dest0:archive",
                 type=LocationType.LONG_TERM_ARCHIVE) == 100 * t.GB
    assert value(families, "opsdb_location_high_watermark_bytes", location="dest0:archive",
                 type=LocationType.LONG_TERM_ARCHIVE) == 80 * t.GB  # the default 80 % of 100 GB
    assert value(families, "opsdb_location_low_watermark_bytes", location="dest0:archive",
                 type=LocationType.LONG_TERM_ARCHIVE) == 70 * t.GB
    assert 5 * 3600 - 60 < value(families, "opsdb_oldest_unsafe_raw_package_seconds") < 5 * 3600 + 60
    assert 19 * 60 < value(families, "opsdb_worker_last_seen_seconds", worker="ccat-dtn-1", site="ccat") < 21 * 60
    assert value(families, "opsdb_site_jobs_waiting", site="ccat") == 2  # the transfer and its bundle's build


def test_metrics_count_requests_and_their_latency(client):
    client.get("/health/")

    families = scrape(client)

    assert value(families, "opsdb_http_requests_total", method="GET", view="health", status="200") >= 1
    assert value(families, "opsdb_http_request_duration_seconds_count", method="GET", view="health") >= 1


@pytest.mark.parametrize("n_routes", [1, 3])
def test_metrics_cost_a_fixed_number_of_queries(client, django_assert_num_queries, n_routes):
    flow(n_routes)
    client.get("/metrics")  # content types cached, as in a running server

    with django_assert_num_queries(QUERIES_PER_SCRAPE):
        scrape(client)


# 11 plus 3 per declared job kind (its pending, active and failed jobs)
QUERIES_PER_SCRAPE = 11 + 3 * len(job_kinds)


def exported_names(client) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(client.get("/metrics").content.decode()):
        names |= {sample.name for sample in family.samples} | {family.name}
    return names


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bopsdb_[a-z_]+\b", text))


def test_the_grafana_dashboard_and_alert_rules_use_only_exported_metrics(client):
    flow(1)
    client.get("/health/")
    exported = exported_names(client)
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    rules = yaml.safe_load((MONITORING / "prometheus-alerts.yml").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]

    used = set().union(*(used_names(e) for e in expressions))

    assert used - exported == set()
    assert {"opsdb_worker_last_seen_seconds", "opsdb_jobs_requiring_intervention", "opsdb_location_used_bytes",
            "opsdb_location_high_watermark_bytes", "opsdb_oldest_unsafe_raw_package_seconds"} <= used


def test_the_alert_rules_cover_the_stuck_cases():
    rules = yaml.safe_load((MONITORING / "prometheus-alerts.yml").read_text())

    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}

    assert {"OpsdbWorkerSilent", "OpsdbInterventionQueueNotEmpty", "OpsdbBufferAboveHighWatermark",
            "OpsdbRawDataUnsafeOver24h"} <= names
