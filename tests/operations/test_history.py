"""The scheduler's operations history pass: totals, route and location samples, time to safety, keep times."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from operations.history import (
    bucket_start,
    outcome_of,
    record_history,
    safety_bin,
    safety_bin_seconds,
)
from operations.models import (
    HistoryCursor,
    JobOutcomeTotal,
    LocationSample,
    Resolution,
    RouteSample,
    RouteTotal,
    SafetySample,
)
from opsdb.choices import JobStatus
from opsdb.models import RawDataPackage, RawDataPackageCopy
from opsdb.services import job_cancel, job_claim, job_fail
from tests import factories as f
from tests import topology as t

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    """ccat → cologne, a 7 GB bundle transferred, one transfer failing once, one pending."""
    ccat, cologne = t.site("ccat", archive=False), t.site("cologne")
    route = t.direct(ccat, cologne)

    def transfer(size=7 * t.GB):
        bundle = f.DataTransferPackageFactory(origin_location=ccat.buffer, payload_size=size)
        return f.DataTransferFactory(transfer_package=bundle, route=route, origin_location=ccat.buffer,
                                     destination_location=cologne.buffer)

    return {"ccat": ccat, "cologne": cologne, "route": route, "transfer": transfer}


def fail_once(job, error="bbcp: connection reset"):
    job = job_claim(job=job, worker="ccat-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error=error)
    return job


def test_bucket_start_floors_to_five_minutes_and_hours():
    moment = datetime(2026, 11, 27, 14, 37, 12, 5, tzinfo=UTC)

    assert bucket_start(moment, Resolution.FIVE_MINUTES) == datetime(2026, 11, 27, 14, 35, tzinfo=UTC)
    assert bucket_start(moment, Resolution.HOUR) == datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(("transition", "state", "outcome"), [
    ("complete", JobStatus.TRANSFERRED, "completed"), ("fail", JobStatus.PENDING, "retried"),
    ("expire", JobStatus.PENDING, "retried"), ("fail", JobStatus.FAILED, "failed"),
    ("expire", JobStatus.FAILED, "failed"), ("cancel", JobStatus.CANCELLED, "cancelled"),
    ("claim", JobStatus.ACTIVE, None), ("retry", JobStatus.PENDING, None),
])
def test_outcome_of_each_logged_transition(transition, state, outcome):
    assert outcome_of(transition, state) == outcome


def test_safety_bins_hold_their_middle():
    for seconds in (1, 59, 3600, 5 * 86400):
        middle = safety_bin_seconds(safety_bin(seconds))
        assert seconds / 1.2 < middle < seconds * 1.2


def test_history_counts_completions_failures_and_bytes(line):
    now = timezone.now()
    t.arrive(line["transfer"]())
    fail_once(line["transfer"](size=2 * t.GB))
    line["transfer"](size=3 * t.GB)

    record_history(now=now)

    totals = {(r.kind, r.outcome): r.count for r in JobOutcomeTotal.objects.all()}
    assert totals == {("transfer", "completed"): 1, ("transfer", "retried"): 1}
    assert RouteTotal.objects.get(route=line["route"]).bytes_done == 7 * t.GB
    sample = RouteSample.objects.get(route=line["route"], resolution=Resolution.FIVE_MINUTES)
    assert (sample.succeeded, sample.failed_attempts, sample.bytes_done) == (1, 1, 7 * t.GB)
    assert (sample.queued_jobs, sample.queued_bytes, sample.active_jobs) == (2, 5 * t.GB, 0)
    assert RouteSample.objects.filter(route=line["route"], resolution=Resolution.HOUR).count() == 1


def test_history_counts_each_event_once(line):
    now = timezone.now()
    t.arrive(line["transfer"]())
    record_history(now=now)

    record_history(now=now)

    assert JobOutcomeTotal.objects.get(kind="transfer", outcome="completed").count == 1
    assert RouteSample.objects.get(route=line["route"], resolution=Resolution.FIVE_MINUTES).succeeded == 1
    assert RouteTotal.objects.get(route=line["route"]).transfers_done == 1


def test_history_adds_later_events_to_the_totals(line):
    now = timezone.now()
    t.arrive(line["transfer"]())
    record_history(now=now)
    job_cancel(job=line["transfer"]())
    t.arrive(line["transfer"](size=t.GB))

    record_history(now=now)

    totals = {(r.kind, r.outcome): r.count for r in JobOutcomeTotal.objects.all()}
    assert totals == {("transfer", "completed"): 2, ("transfer", "cancelled"): 1}
    assert RouteTotal.objects.get(route=line["route"]).bytes_done == 8 * t.GB


def test_the_queue_snapshot_follows_the_current_tick(line):
    now = timezone.now()
    pending = line["transfer"]()
    record_history(now=now)
    t.arrive(pending)

    record_history(now=now)

    sample = RouteSample.objects.get(route=line["route"], resolution=Resolution.FIVE_MINUTES)
    assert (sample.queued_jobs, sample.queued_bytes, sample.succeeded) == (0, 0, 1)


def test_an_earlier_bucket_keeps_its_snapshot(line):
    earlier = timezone.now() - timedelta(minutes=10)
    line["transfer"]()
    record_history(now=earlier)

    record_history(now=timezone.now())

    old = RouteSample.objects.get(resolution=Resolution.FIVE_MINUTES,
                                  start=bucket_start(earlier, Resolution.FIVE_MINUTES))
    assert old.queued_jobs == 1


def test_location_samples_sum_the_bytes_present(line):
    t.waiting(line["ccat"].buffer, size=3 * t.GB)
    t.waiting(line["ccat"].buffer, size=2 * t.GB)
    now = timezone.now()

    record_history(now=now)

    used = dict(LocationSample.objects.filter(resolution=Resolution.FIVE_MINUTES).values_list("location_id",
                                                                                            "used_bytes"))
    assert used[line["ccat"].buffer.pk] == 5 * t.GB
    assert used[line["cologne"].archive.pk] == 0


def test_old_samples_are_forgotten(line):
    now = timezone.now()
    RouteSample.objects.create(route=line["route"], resolution=Resolution.FIVE_MINUTES,
                               start=now - timedelta(hours=49))
    RouteSample.objects.create(route=line["route"], resolution=Resolution.HOUR, start=now - timedelta(hours=49))
    RouteSample.objects.create(route=line["route"], resolution=Resolution.HOUR, start=now - timedelta(days=91))

    record_history(now=now)

    kept = set(RouteSample.objects.values_list("resolution", "start"))
    assert (Resolution.HOUR, now - timedelta(hours=49)) in kept
    assert (Resolution.FIVE_MINUTES, now - timedelta(hours=49)) not in kept
    assert (Resolution.HOUR, now - timedelta(days=91)) not in kept


def archived(job, *, verified=True):
    """The archive transfer done, with the verified copy its worker reports."""
    t.finish(job)
    package = job.raw_package
    f.RawDataPackageCopyFactory(raw_package=package, location=job.destination_location,
                                checksum_verified=package.checksum if verified else "")


def registered(site, *, hours_ago: float):
    """A raw package registered at ``site``'s buffer ``hours_ago``, with its archive transfer there."""
    copy = f.RawDataPackageCopyFactory(location=site.buffer)
    RawDataPackage.objects.filter(pk=copy.raw_package_id).update(created_at=timezone.now()
                                                                  - timedelta(hours=hours_ago))
    return f.LongTermArchiveTransferFactory(raw_package=RawDataPackage.objects.get(pk=copy.raw_package_id),
                                            source_location=site.buffer, destination_location=site.archive)


def test_time_to_safety_counts_a_package_once_its_only_archive_holds_a_verified_copy(line):
    job = registered(line["cologne"], hours_ago=3)
    archived(job)

    record_history(now=timezone.now())

    [sample] = SafetySample.objects.all()
    assert sample.counts == {str(safety_bin(3 * 3600)): 1}


def test_an_unverified_archive_copy_does_not_make_a_package_safe(line):
    archived(registered(line["cologne"], hours_ago=3), verified=False)

    record_history(now=timezone.now())

    assert SafetySample.objects.count() == 0


def test_time_to_safety_waits_for_the_archive_of_every_destination(line):
    cornell = t.site("cornell")
    t.direct(line["cologne"], cornell)  # what lands at cologne goes on to cornell, which archives it too
    job = registered(line["cologne"], hours_ago=5)
    archived(job)
    record_history(now=timezone.now())
    assert SafetySample.objects.count() == 0
    f.RawDataPackageCopyFactory(raw_package=job.raw_package, location=cornell.buffer)
    second = f.LongTermArchiveTransferFactory(raw_package=job.raw_package, source_location=cornell.buffer,
                                              destination_location=cornell.archive)

    archived(second)
    record_history(now=timezone.now())

    [sample] = SafetySample.objects.all()
    assert sum(sample.counts.values()) == 1


def test_a_further_archive_copy_of_a_safe_package_is_not_counted_again(line):
    job = registered(line["cologne"], hours_ago=2)
    archived(job)
    record_history(now=timezone.now())
    extra = f.DataLocationFactory(site=line["cologne"].site, name="archive2",
                                  location_type=line["cologne"].archive.location_type)
    archived(f.LongTermArchiveTransferFactory(raw_package=job.raw_package, source_location=line["cologne"].buffer,
                                              destination_location=extra))

    record_history(now=timezone.now())

    [sample] = SafetySample.objects.all()
    assert sum(sample.counts.values()) == 1


def test_a_repaired_archive_copy_is_not_counted_again(line):
    job = registered(line["cologne"], hours_ago=2)
    archived(job)
    record_history(now=timezone.now())
    copy = RawDataPackageCopy.objects.get(raw_package=job.raw_package, location=line["cologne"].archive)
    repair = f.LongTermArchiveTransferFactory(raw_package=job.raw_package, source_location=line["cologne"].buffer,
                                              destination_location=line["cologne"].archive, repair_of=copy)
    t.finish(repair)

    record_history(now=timezone.now())

    [sample] = SafetySample.objects.all()
    assert sum(sample.counts.values()) == 1


@pytest.mark.parametrize("n", [1, 3])
def test_history_costs_a_fixed_number_of_queries(line, django_assert_num_queries, n):
    for _ in range(n):
        t.arrive(line["transfer"]())
        fail_once(line["transfer"]())
        t.waiting(line["ccat"].buffer)
    record_history(now=timezone.now() - timedelta(minutes=5))  # content types cached, samples of a tick before
    for _ in range(n):
        t.arrive(line["transfer"]())
        t.waiting(line["cologne"].buffer)  # bytes appear at a location: the pass adds them to its totals

    with django_assert_num_queries(QUERIES_PER_TICK_WITH_EVENTS):
        record_history(now=timezone.now())


QUERIES_PER_TICK_WITH_EVENTS = 31


def test_the_cursor_moves_past_what_was_read(line):
    t.arrive(line["transfer"]())

    record_history(now=timezone.now())

    assert HistoryCursor.objects.get().last_id > 0
