"""Route health: automatic pause on retryable failures, held transfers, cool-down and probe, manual pause."""

import threading
from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django_fsm import TransitionNotAllowed
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus
from opsdb.models import DataTransferLog
from opsdb.recovery import expire_leases
from tests import factories as f
from tests.apiclient import operator_client, worker_client
from transfers.choices import RouteState
from transfers.models import AUTOMATIC, DataTransfer, DataTransferRoute, RouteAttempt
from transfers.services import route_health_pass, route_pause, route_resume, route_transfer_failed

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"
CHECKSUM = "ab" * 32


def route_with_transfers(count: int, **route_fields) -> tuple[DataTransferRoute, list[DataTransfer]]:
    route = f.RouteFactory(max_concurrent=50, **route_fields)
    origin = f.DataLocationFactory(site=route.origin_site)
    destination = f.DataLocationFactory(site=route.destination_site)
    transfers = [
        f.DataTransferFactory(
            route=route, destination_location=destination, method=route.method,
            transfer_package=f.DataTransferPackageFactory(origin_location=origin, checksum=CHECKSUM, size=1),
        )
        for _ in range(count)
    ]
    return route, transfers


def claim(client, name="w1"):
    response = client.post(CLAIM, {"worker": name, "kinds": ["transfer"]}, format="json")
    return response.json() if response.status_code == 200 else None


def fail(client, job, *, retryable=True, error="bbcp: connection reset by peer"):
    body = {"lease_token": job["lease_token"], "error": error, "retryable": retryable}
    return client.post(f"/api/v1/work/transfer/{job['id']}/fail/", body, format="json")


def complete(client, job):
    body = {"lease_token": job["lease_token"], "checksum": CHECKSUM}
    return client.post(f"/api/v1/work/transfer/{job['id']}/complete/", body, format="json")


def claim_and(client, outcome: str):
    """Claim the next transfer and fail it (retryable or not) or complete it."""
    job = claim(client)
    assert job is not None
    response = complete(client, job) if outcome == "ok" else fail(client, job, retryable=outcome == "retry")
    assert response.status_code == 200, response.content
    return job


def route_transitions(route) -> list[tuple[str, str, str]]:
    logs = StateLog.objects.filter(
        content_type=ContentType.objects.get_for_model(DataTransferRoute), object_id=route.pk
    ).order_by("pk")
    return [(s.transition, s.source_state, s.state) for s in logs]


@pytest.fixture
def client():
    return worker_client("w1")


@pytest.fixture(autouse=True)
def no_backoff(settings):
    settings.JOB_BACKOFF_BASE_SECONDS = 0
    settings.JOB_BACKOFF_JITTER = 0
    settings.JOB_MAX_ATTEMPTS = 20


def test_route_pauses_after_5_consecutive_retryable_failures(client):
    route, _ = route_with_transfers(6)

    for _ in range(4):
        claim_and(client, "retry")
    route.refresh_from_db()
    still_active = route.state
    claim_and(client, "retry")

    route.refresh_from_db()
    assert still_active == RouteState.ACTIVE
    assert (route.state, route.state_by, route.consecutive_failures) == (RouteState.PAUSED_AUTO, AUTOMATIC, 5)
    assert route.state_reason.startswith("5 consecutive retryable transfer failures (limit 5); last error: bbcp:")
    assert route.cooldown_until > timezone.now() + timedelta(minutes=29)
    assert route_transitions(route) == [("pause_auto", "ACTIVE", "PAUSED_AUTO")]
    line = DataTransferLog.objects.get(content_type=ContentType.objects.get_for_model(DataTransferRoute))
    assert (line.object_id, line.level) == (route.pk, "WARNING")
    assert "paused automatically: 5 consecutive" in line.message


def test_non_retryable_failures_do_not_count(client):
    route, _ = route_with_transfers(6)

    for _ in range(6):
        claim_and(client, "fatal")

    route.refresh_from_db()
    assert (route.state, route.consecutive_failures, RouteAttempt.objects.count()) == (RouteState.ACTIVE, 0, 0)


def test_a_success_resets_the_consecutive_count(client):
    route, _ = route_with_transfers(9)

    for outcome in ["retry"] * 4 + ["ok"] + ["retry"] * 4:
        claim_and(client, outcome)

    route.refresh_from_db()
    assert (route.state, route.consecutive_failures) == (RouteState.ACTIVE, 4)


def test_success_rate_under_half_over_10_attempts_pauses(client, settings):
    settings.ROUTE_PAUSE_AFTER_FAILURES = 100
    route, _ = route_with_transfers(10)
    pattern = ["ok", "retry", "retry", "ok", "retry", "retry", "ok", "retry", "retry"]

    for outcome in pattern:
        claim_and(client, outcome)
    route.refresh_from_db()
    after_9 = route.state
    claim_and(client, "retry")

    route.refresh_from_db()
    assert after_9 == RouteState.ACTIVE
    assert route.state == RouteState.PAUSED_AUTO
    assert route.state_reason.startswith("success rate 30% (3 of 10 attempts) over the last 30 min, under 50%")


def test_success_rate_counts_only_the_window_and_since_the_route_resumed(settings):
    settings.ROUTE_PAUSE_AFTER_FAILURES = 100
    route, transfers = route_with_transfers(1)
    now = timezone.now()
    RouteAttempt.objects.bulk_create([RouteAttempt(route=route, succeeded=False,
                                                   created_at=now - timedelta(minutes=31))] * 20)
    RouteAttempt.objects.bulk_create([RouteAttempt(route=route, succeeded=False,
                                                   created_at=now - timedelta(minutes=5))] * 8)
    route_pause(route=route, reason="maintenance", by=f.operator(), now=now - timedelta(minutes=10))
    route_resume(route=DataTransferRoute.objects.get(pk=route.pk), reason="done", by=f.operator(),
                 now=now - timedelta(minutes=4))

    route_transfer_failed(transfer=transfers[0], error="timeout", now=now)

    route.refresh_from_db()
    assert route.state == RouteState.ACTIVE  # 8 + 1 failures in the window, but only 1 since the resume


def test_paused_route_holds_its_transfers_and_others_flow(client):
    paused, held = route_with_transfers(2)
    _, flowing = route_with_transfers(1)
    route_pause(route=paused, reason="link maintenance until 14:00", by=f.operator())

    first = claim(client)
    second = claim(client)

    assert (first["id"], second) == (flowing[0].pk, None)
    assert set(DataTransfer.objects.filter(route=paused).values_list("status", flat=True)) == {JobStatus.PENDING}


def auto_paused(client, count=7):
    route, transfers = route_with_transfers(count)
    for _ in range(5):
        claim_and(client, "retry")
    route.refresh_from_db()
    assert route.state == RouteState.PAUSED_AUTO
    return route, transfers


def end_cooldown(route):
    DataTransferRoute.objects.filter(pk=route.pk).update(cooldown_until=timezone.now() - timedelta(seconds=1))


def test_no_probe_before_the_cooldown_then_exactly_one(client):
    route, _ = auto_paused(client)

    during_cooldown = claim(client)
    end_cooldown(route)
    probe = claim(client)
    second = claim(client)

    route.refresh_from_db()
    assert (during_cooldown, second) == (None, None)
    assert route.probe_transfer_id == probe["id"]
    assert route.state == RouteState.PAUSED_AUTO


def test_probe_success_resumes_the_route(client):
    route, _ = auto_paused(client)
    end_cooldown(route)
    probe = claim(client)

    complete(client, probe)
    next_job = claim(client)

    route.refresh_from_db()
    assert (route.state, route.state_by, route.consecutive_failures) == (RouteState.ACTIVE, AUTOMATIC, 0)
    assert route.state_reason == f"probe transfer #{probe['id']} succeeded"
    assert (route.probe_transfer_id, route.cooldown_until) == (None, None)
    assert next_job is not None
    assert route_transitions(route) == [("pause_auto", "ACTIVE", "PAUSED_AUTO"), ("resume", "PAUSED_AUTO", "ACTIVE")]


def test_probe_failure_restarts_the_cooldown(client):
    route, _ = auto_paused(client)
    end_cooldown(route)
    probe = claim(client)

    fail(client, probe)
    after = claim(client)

    route.refresh_from_db()
    assert (route.state, route.probe_transfer_id, after) == (RouteState.PAUSED_AUTO, None, None)
    assert route.cooldown_until > timezone.now() + timedelta(minutes=29)
    assert route_transitions(route)[-1] == ("probe_failed", "PAUSED_AUTO", "PAUSED_AUTO")


def test_probe_lost_to_an_expired_lease_frees_the_slot_without_counting(client):
    route, _ = auto_paused(client)
    end_cooldown(route)
    probe = claim(client)
    DataTransfer.objects.filter(pk=probe["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    expire_leases(now=timezone.now())
    late = complete(client, probe)
    replacement = claim(client)

    route.refresh_from_db()
    assert late.status_code == 409
    assert route.state == RouteState.PAUSED_AUTO
    assert route.consecutive_failures == 5  # the lost lease says nothing about the link
    assert replacement is not None and route.probe_transfer_id == replacement["id"]
    complete(client, replacement)
    route.refresh_from_db()
    assert route.state == RouteState.ACTIVE


def test_manual_pause_releases_no_probe_and_resume_by_hand(client):
    route, _ = auto_paused(client)
    operator = f.operator()
    route_pause(route=route, reason="provider incident #4711", by=operator)
    end_cooldown(route)

    held = claim(client)
    route_resume(route=route, reason="provider fixed it", by=operator)
    flowing = claim(client)

    route.refresh_from_db()
    assert held is None and flowing is not None
    assert (route.state, route.state_by, route.state_reason) == (RouteState.ACTIVE, "operator", "provider fixed it")
    assert route_transitions(route)[1:] == [("pause", "PAUSED_AUTO", "PAUSED_MANUAL"),
                                            ("resume", "PAUSED_MANUAL", "ACTIVE")]
    by = StateLog.objects.filter(transition="pause", object_id=route.pk).get()
    assert (by.by, by.description) == (operator, "operator: provider incident #4711")


def test_pause_needs_a_reason_and_is_refused_when_already_paused():
    route = f.RouteFactory()
    with pytest.raises(ValidationError):
        route_pause(route=route, reason="  ", by=f.operator())
    route_pause(route=route, reason="maintenance", by=f.operator())

    with pytest.raises(TransitionNotAllowed):
        route_pause(route=route, reason="again", by=f.operator())
    with pytest.raises(TransitionNotAllowed):
        route_resume(route=f.RouteFactory(), reason="was never paused", by=f.operator())


def test_api_pause_and_resume(role_groups):
    route = f.RouteFactory()
    client = operator_client()
    url = f"/api/v1/routes/{route.pk}/"

    no_reason = client.post(f"{url}pause/", {}, format="json")
    paused = client.post(f"{url}pause/", {"reason": "maintenance"}, format="json")
    again = client.post(f"{url}pause/", {"reason": "maintenance"}, format="json")
    listed = client.get("/api/v1/routes/", {"state": "PAUSED_MANUAL"}).json()["results"]
    worker = worker_client().post(f"{url}resume/", {"reason": "x"}, format="json")
    resumed = client.post(f"{url}resume/", {"reason": "over"}, format="json")

    assert (no_reason.status_code, list(no_reason.json())) == (400, ["reason"])
    assert paused.status_code == 200
    assert {k: paused.json()[k] for k in ("state", "state_reason", "state_by")} == {
        "state": "PAUSED_MANUAL", "state_reason": "maintenance", "state_by": "operator"}
    assert paused.json()["state_since"] is not None
    assert (again.status_code, again.json()["status"]) == (409, "PAUSED_MANUAL")
    assert [r["id"] for r in listed] == [route.pk]
    assert worker.status_code == 403
    assert (resumed.status_code, resumed.json()["state"]) == (200, "ACTIVE")


def test_api_state_is_read_only(role_groups):
    route = f.RouteFactory()

    response = operator_client().patch(f"/api/v1/routes/{route.pk}/", {"state": "PAUSED_MANUAL"}, format="json")

    route.refresh_from_db()
    assert response.status_code == 200
    assert route.state == RouteState.ACTIVE


def test_saving_route_settings_keeps_its_health():
    route = f.RouteFactory()
    stale = DataTransferRoute.objects.get(pk=route.pk)
    route_pause(route=route, reason="maintenance", by=f.operator())

    stale.max_concurrent = 7
    stale.save()

    route.refresh_from_db()
    assert (route.max_concurrent, route.state, route.state_reason) == (7, RouteState.PAUSED_MANUAL, "maintenance")


def test_max_concurrent_zero_is_refused_with_a_pointer_to_pausing():
    route = f.RouteFactory.build(origin_site=f.SiteFactory(), destination_site=f.SiteFactory(), max_concurrent=0)

    with pytest.raises(ValidationError) as exc:
        route.full_clean()

    assert exc.value.message_dict["max_concurrent"] == ["At least 1; to stop a route, pause it (with a reason)."]


def test_prune_forgets_attempts_older_than_the_window():
    route = f.RouteFactory()
    now = timezone.now()
    RouteAttempt.objects.create(route=route, succeeded=True, created_at=now - timedelta(minutes=31))
    recent = RouteAttempt.objects.create(route=route, succeeded=True, created_at=now - timedelta(minutes=29))

    result = route_health_pass(now=now)

    assert (result.count, list(RouteAttempt.objects.values_list("pk", flat=True))) == (1, [recent.pk])


def test_health_pass_says_each_state_change_once():
    route = f.RouteFactory()
    quiet = route_health_pass(now=timezone.now()).lines
    route_pause(route=route, reason="link maintenance", by=f.operator())

    changed = route_health_pass(now=timezone.now()).lines
    again = route_health_pass(now=timezone.now()).lines

    assert (quiet, again) == ([], [])
    assert changed == [f"route health: route {route} is paused (by an operator) (operator: link maintenance)"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_failures_reported_at_once_are_all_counted_and_pause_once():
    """8 workers report retryable failures at the same moment: the route row lock counts each once."""
    route, _ = route_with_transfers(8)
    clients = [worker_client(f"w{i}") for i in range(8)]
    jobs = [claim(c, f"w{i}") for i, c in enumerate(clients)]
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def report(client, job):
        try:
            barrier.wait()
            codes.append(fail(client, job).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=report, args=pair) for pair in zip(clients, jobs, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    route.refresh_from_db()
    assert codes == [200] * 8
    assert (route.state, route.consecutive_failures) == (RouteState.PAUSED_AUTO, 8)
    assert RouteAttempt.objects.filter(route=route, succeeded=False).count() == 8
    assert route_transitions(route) == [("pause_auto", "ACTIVE", "PAUSED_AUTO")]


def test_counted_failures_leave_the_routes_edit_history_alone(client):
    route, _ = route_with_transfers(3)
    edits = route.history.count()

    for _ in range(3):
        claim_and(client, "retry")

    route.refresh_from_db()
    assert route.consecutive_failures == 3
    assert route.history.count() == edits
