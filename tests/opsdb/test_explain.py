"""Why is it waiting: every explanation code from the job's state, and the bulk computation's query count."""

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from custody.models import DeletionJob
from opsdb.choices import JobStatus
from opsdb.explain import attach_explanations, explain_jobs, explanation_of
from opsdb.explanation import ExplanationCode, clock, duration, quoted_error
from opsdb.models import ApiToken, WorkerProfile
from opsdb.services import job_cancel, job_claim, job_complete, job_fail, job_heartbeat
from tests import factories as f
from tests import topology as t
from tests.apiclient import operator_client
from transfers.choices import RouteState
from transfers.models import DataTransfer
from transfers.services import route_pause

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture(autouse=True)
def fresh_now():
    """NOW is each test's own start: ages in the words ("47 min") are computed against the real clock,
    and a module-level time goes stale while a loaded machine runs the tests before this one."""
    global NOW
    NOW = timezone.now()


def set_state(job, **fields):
    """Put a job into a state directly (the status field is protected on instances)."""
    type(job).objects.filter(pk=job.pk).update(**fields)
    return type(job).objects.get(pk=job.pk)


def seen_worker(name: str, *sites, last_seen=None):
    """A worker account restricted to ``sites`` (none: every site) whose token was last used at ``last_seen``."""
    user = f.worker_user(name)
    profile = WorkerProfile.objects.create(user=user)
    profile.sites.set(sites)
    ApiToken.objects.create(user=user, prefix=name[:8], digest=f"{name:0>64}"[:64], last_used_at=last_seen)
    return user


def explained(job):
    return explain_jobs([job])[0]


# --- the words ------------------------------------------------------------------------------------


def test_clock_today_is_the_time_and_another_day_has_the_date():
    now = timezone.now().replace(hour=12, minute=0)

    assert clock(now.replace(hour=9, minute=5), now) == "09:05"
    assert clock(now - timedelta(days=2), now) == f"{timezone.localtime(now - timedelta(days=2)):%Y-%m-%d} 12:00"


def test_duration_rounds_to_what_people_say():
    assert [duration(s) for s in (40, 180, 7500, 3 * 86400)] == ["40 s", "3 min", "2 h 5 min", "3 days"]


def test_quoted_error_keeps_the_first_line_shortened():
    assert quoted_error("No space left on device\ntraceback…") == "“No space left on device”"
    assert len(quoted_error("x" * 500, 50)) == 52


# --- each code ---------------------------------------------------------------------------------------


def test_done_job_is_finished_at_its_time():
    site = t.site("cologne")
    job = t.build(f.DataTransferPackageFactory(origin_location=site.buffer))

    explanation = explained(job)

    assert (explanation.code, explanation.since) == (ExplanationCode.DONE, job.finished_at)
    assert explanation.message == f"Finished at {clock(job.finished_at)}."


def test_cancelled_job_says_so():
    job = job_cancel(job=f.LongTermArchiveTransferFactory())

    assert (explained(job).code, explained(job).since) == (ExplanationCode.CANCELLED, job.finished_at)


def test_failed_job_needs_an_operator_after_its_attempts_with_the_last_error():
    job = f.LongTermArchiveTransferFactory()
    for _ in range(3):
        job = set_state(job, next_attempt_at=None) if job.status == JobStatus.PENDING else job
        job = job_claim(job=job, worker="cologne-dtn-1")
        job, _ = job_fail(job=job, lease_token=job.lease_token, error="No space left on device")

    explanation = explained(job)

    assert job.status == JobStatus.FAILED
    assert explanation.code == ExplanationCode.NEEDS_OPERATOR
    assert explanation.since == job.finished_at
    assert explanation.message.startswith("Needs an operator after 3 failed attempts")
    assert "“No space left on device”" in explanation.message


def test_pending_job_in_backoff_is_retry_n_of_m_after_the_error():
    job = job_claim(job=f.DataTransferUnpackFactory(), worker="cologne-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="Connection reset by peer")

    explanation = explained(job)

    assert explanation.code == ExplanationCode.RETRY_WAIT
    assert explanation.message == (
        f"Retry 2 of 5 at {clock(job.next_attempt_at)}, after “Connection reset by peer” at {clock(job.updated_at)}."
    )
    assert explanation.since == job.updated_at


def test_active_job_is_being_done_by_its_worker():
    job = job_claim(job=f.DataTransferPackageFactory(), worker="ccat-dtn-1")

    explanation = explained(job)

    assert (explanation.code, explanation.since) == (ExplanationCode.RUNNING, job.claimed_at)
    assert explanation.message.startswith(f"Being done by ccat-dtn-1 since {clock(job.claimed_at)}")


def test_active_job_resuming_a_partial_transfer_says_where_it_resumed():
    transfer = f.DataTransferFactory(transfer_package__size=50 * 10**12)
    transfer = set_state(transfer, resume_bytes=37_200_000_000_000)
    transfer = job_claim(job=transfer, worker="ccat-dtn-1")
    transfer = job_heartbeat(job=transfer, lease_token=transfer.lease_token, resumed_from=37_200_000_000_000,
                             bytes_done=40 * 10**12)

    explanation = explained(transfer)

    assert explanation.code == ExplanationCode.RESUMED
    assert explanation.message == (
        f"Being moved by ccat-dtn-1 since {clock(transfer.claimed_at)}, resumed at 37.2 TB of 50.0 TB kept from an "
        "earlier attempt; 40.0 TB done."
    )


def test_active_job_whose_lease_ran_out_says_its_worker_stopped_reporting():
    job = job_claim(job=f.StagingJobFactory(), worker="cologne-dtn-1")
    job = set_state(job, lease_expires_at=NOW - timedelta(minutes=2))

    explanation = explained(job)

    assert (explanation.code, explanation.since) == (ExplanationCode.LEASE_EXPIRED, job.lease_expires_at)
    assert explanation.message.startswith("cologne-dtn-1 stopped reporting: its lease ran out at")


def test_due_job_with_a_live_worker_at_its_site_is_queued_for_it():
    cologne = t.site("cologne")
    seen_worker("cologne-dtn-1", cologne.site, last_seen=NOW - timedelta(seconds=30))
    job = f.LongTermArchiveTransferFactory(source_location=cologne.buffer, destination_location=cologne.archive)

    explanation = explained(job)

    assert explanation.code == ExplanationCode.QUEUED
    assert explanation.message == (
        f"Waiting for a worker at cologne to claim it (cologne-dtn-1 last seen {clock(NOW - timedelta(seconds=30))})."
    )
    assert explanation.since == job.updated_at


def test_due_job_whose_site_workers_are_silent_says_no_worker_seen_for_how_long():
    cornell = t.site("cornell")
    last = NOW - timedelta(minutes=47)
    seen_worker("cornell-dtn-1", cornell.site, last_seen=last)
    seen_worker("cologne-dtn-1", t.site("cologne").site, last_seen=NOW)  # serves another site only
    job = f.LongTermArchiveTransferFactory(source_location=cornell.buffer, destination_location=cornell.archive)

    explanation = explained(job)

    assert explanation.code == ExplanationCode.NO_WORKER
    assert explanation.message == (
        f"No worker serving cornell has been seen for 47 min (cornell-dtn-1 last seen {clock(last)})."
    )
    assert explanation.since == job.updated_at  # it waits since then, and nobody has been there to take it


def test_a_worker_falling_silent_after_the_job_began_waiting_dates_the_situation_from_its_last_sight():
    cornell = t.site("cornell")
    job = set_state(f.LongTermArchiveTransferFactory(source_location=cornell.buffer,
                                                     destination_location=cornell.archive),
                    updated_at=NOW - timedelta(hours=2))
    last = NOW - timedelta(minutes=30)
    seen_worker("cornell-dtn-1", cornell.site, last_seen=last)

    assert (explained(job).code, explained(job).since) == (ExplanationCode.NO_WORKER, last)


def test_an_unrestricted_worker_serves_every_site():
    cornell = t.site("cornell")
    seen_worker("anywhere-1", last_seen=NOW)
    job = f.LongTermArchiveTransferFactory(source_location=cornell.buffer, destination_location=cornell.archive)

    assert explained(job).code == ExplanationCode.QUEUED


def test_due_job_at_a_site_no_worker_serves_says_so():
    cornell = t.site("cornell", processing=True)
    seen_worker("cologne-dtn-1", t.site("cologne").site, last_seen=NOW)
    job = f.StagingJobFactory(destination_location=cornell.processing)

    explanation = explained(job)

    assert explanation.code == ExplanationCode.NO_WORKER
    assert explanation.message.startswith("No worker serves cornell: no worker account may claim jobs there")


def test_waiting_job_with_partial_data_says_where_the_next_attempt_resumes():
    cologne = t.site("cologne")
    seen_worker("cologne-dtn-1", last_seen=NOW)
    job = f.DataTransferFactory(origin_location=cologne.buffer, transfer_package__origin_location=cologne.buffer)
    job = set_state(job, resume_bytes=12 * 10**9)

    assert explained(job).message.endswith("The next attempt resumes at 12.0 GB.")


def test_transfer_on_a_route_paused_by_an_operator_is_held_with_who_and_why():
    ccat, cologne = t.site("ccat"), t.site("cologne")
    route = t.direct(ccat, cologne)
    transfer = f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                     transfer_package__origin_location=ccat.buffer)
    route = route_pause(route=route, reason="firewall change at cologne", by=f.operator("alice"))

    explanation = explained(transfer)

    assert (explanation.code, explanation.since) == (ExplanationCode.ROUTE_PAUSED, route.state_since)
    assert explanation.message == (
        f"Held: route ccat → cologne was paused by alice at {clock(route.state_since)}: “firewall change at "
        "cologne”. Its transfers wait until an operator resumes it."
    )


def test_transfer_on_a_route_paused_automatically_says_when_the_probe_comes():
    ccat, cologne = t.site("ccat"), t.site("cologne")
    route = t.direct(ccat, cologne)
    type(route).objects.filter(pk=route.pk).update(
        state=RouteState.PAUSED_AUTO, state_since=NOW, state_reason="5 failures in a row",
        cooldown_until=NOW + timedelta(minutes=10))
    transfer = f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                     transfer_package__origin_location=ccat.buffer)

    explanation = explained(transfer)

    assert explanation.code == ExplanationCode.ROUTE_PAUSED
    assert explanation.message == (
        f"Held: route ccat → cologne paused itself at {clock(NOW)} after repeated failures: “5 failures in a row”; "
        f"a probe transfer tests it from {clock(NOW + timedelta(minutes=10))}, and it resumes when a probe succeeds."
    )


def test_transfer_on_a_route_at_its_limit_waits_for_a_slot():
    ccat, cologne = t.site("ccat"), t.site("cologne")
    seen_worker("ccat-dtn-1", last_seen=NOW)
    route = t.direct(ccat, cologne, max_concurrent=1)

    def transfer():
        return f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                     transfer_package__origin_location=ccat.buffer)

    job_claim(job=transfer(), worker="ccat-dtn-1")
    waiting = transfer()

    explanation = explained(waiting)

    assert (explanation.code, explanation.since) == (ExplanationCode.ROUTE_AT_LIMIT, waiting.updated_at)
    assert explanation.message == (
        "Route ccat → cologne is at its limit of 1 transfer at once (1 active): this one starts when one of them ends."
    )


def test_transfer_arrived_at_a_relay_waits_for_the_relay_hop_until_it_exists():
    ccat, cologne, cornell = t.site("ccat"), t.site("cologne"), t.site("cornell")
    route = t.relay(ccat, cologne, cornell)
    first = f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                  transfer_package__origin_location=ccat.buffer)
    first = t.arrive(first)

    explanation = explained(first)
    f.DataTransferFactory(route=route, origin_location=cologne.buffer, destination_location=cornell.buffer,
                          transfer_package=first.transfer_package, previous=first, hop=2)

    assert (explanation.code, explanation.since) == (ExplanationCode.RELAY_HOP, first.finished_at)
    assert explanation.message == (
        f"Arrived at the relay cologne at {clock(first.finished_at)}; waiting for the relay hop cologne → cornell "
        "(the scheduler creates it at its next pass)."
    )
    assert explained(first).code == ExplanationCode.DONE


def test_every_code_is_reached_by_a_test_here():
    tested = {
        ExplanationCode.QUEUED, ExplanationCode.RETRY_WAIT, ExplanationCode.ROUTE_PAUSED,
        ExplanationCode.ROUTE_AT_LIMIT, ExplanationCode.NO_WORKER, ExplanationCode.RUNNING, ExplanationCode.RESUMED,
        ExplanationCode.LEASE_EXPIRED, ExplanationCode.RELAY_HOP, ExplanationCode.NEEDS_OPERATOR,
        ExplanationCode.DONE, ExplanationCode.CANCELLED,
    }

    assert set(ExplanationCode) - tested == {ExplanationCode.BUNDLE_FILLING}  # tests/transfers/test_explain_bundles


# --- in bulk ---------------------------------------------------------------------------------------


def mixed_transfers(n: int, ccat, cologne, route):
    """``n`` of each: pending, pending in backoff, active, done."""
    jobs = []
    for _ in range(n):
        new = [f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                     transfer_package__origin_location=ccat.buffer) for _ in range(4)]
        failed = job_claim(job=new[1], worker="w")
        job_fail(job=failed, lease_token=failed.lease_token, error="timeout")
        job_claim(job=new[2], worker="w")
        done = job_claim(job=new[3], worker="w")
        job_complete(job=done, lease_token=done.lease_token)
        jobs += new
    return jobs


def test_explanations_of_a_list_cost_the_same_queries_for_1_and_3_of_each_state(django_assert_num_queries):
    ccat, cologne = t.site("ccat"), t.site("cologne")
    seen_worker("ccat-dtn-1", ccat.site, last_seen=NOW)
    route = t.direct(ccat, cologne, max_concurrent=100)
    one = list(DataTransfer.objects.filter(pk__in=[j.pk for j in mixed_transfers(1, ccat, cologne, route)]))
    three = list(DataTransfer.objects.filter(pk__in=[j.pk for j in mixed_transfers(3, ccat, cologne, route)]))

    # routes, active transfers per route, the done ones not forwarded, relay routes from where they landed,
    # the due ones' sites, the sites' workers
    with django_assert_num_queries(6):
        explain_jobs(one)
    with django_assert_num_queries(6):
        codes = [e.code for e in explain_jobs(three)]

    assert sorted(codes) == sorted([ExplanationCode.QUEUED, ExplanationCode.RETRY_WAIT, ExplanationCode.RUNNING,
                                    ExplanationCode.DONE] * 3)


def test_jobs_of_several_kinds_are_explained_in_the_order_given():
    jobs = [f.StagingJobFactory(), job_cancel(job=f.LongTermArchiveTransferFactory()), f.DataTransferUnpackFactory()]

    attach_explanations(jobs)

    assert [j.explanation.code for j in jobs] == [ExplanationCode.NO_WORKER, ExplanationCode.CANCELLED,
                                                  ExplanationCode.NO_WORKER]
    assert explanation_of(jobs[1]) is jobs[1].explanation


def test_a_list_with_only_finished_jobs_costs_no_query(django_assert_num_queries):
    jobs = [job_cancel(job=f.LongTermArchiveTransferFactory()) for _ in range(3)]

    with django_assert_num_queries(0):
        explain_jobs(jobs)


# --- in the API ----------------------------------------------------------------------------------


JOB_ENDPOINTS = {
    "transfer-packages": f.DataTransferPackageFactory, "transfers": f.DataTransferFactory,
    "unpacks": f.DataTransferUnpackFactory, "archive-transfers": f.LongTermArchiveTransferFactory,
    "staging-jobs": lambda: f.StagingJobPackageFactory().job,
    "delete-jobs": lambda: DeletionJob.objects.create(location=f.DataLocationFactory(), size=10),
}


@pytest.mark.parametrize("endpoint", list(JOB_ENDPOINTS))
def test_every_job_in_the_read_endpoints_carries_its_explanation(endpoint):
    factory = JOB_ENDPOINTS[endpoint]
    job = factory()
    client = operator_client()

    listed = client.get(f"/api/v1/{endpoint}/").json()["results"][0]["explanation"]
    detail = client.get(f"/api/v1/{endpoint}/{job.pk}/").json()["explanation"]

    assert listed == detail
    assert listed["code"] == ExplanationCode.NO_WORKER
    assert listed["message"].startswith("No worker serves ")
    assert listed["since"] is not None


def test_the_schema_documents_the_explanation_and_its_codes():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    explanation = schema["components"]["schemas"]["DataTransfer"]["properties"]["explanation"]
    component = schema["components"]["schemas"][explanation["allOf"][0]["$ref"].rsplit("/", 1)[1]]

    assert set(component["properties"]) == {"code", "message", "since"}
    assert explanation["readOnly"] is True
