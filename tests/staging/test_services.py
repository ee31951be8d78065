"""Staging services: creating requests (refusals, sources, reuse), cancelling, notifying."""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataFileCopy
from opsdb.services import claim_next, job_claim, job_fail
from staging.choices import StagedPackageState
from staging.services import staging_items_mark_staged, staging_job_cancel, staging_job_create, staging_job_notify
from staging.work import StageHandler
from tests import factories as f
from tests.staging.conftest import archived_package

pytestmark = pytest.mark.django_db


def stage_files_at(package, location, *, expires_at=None, status=CopyStatus.PRESENT):
    for raw_file in package.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=location, status=status, expires_at=expires_at,
                                 path=f"staged/{package.name}/{raw_file.relative_path}")


def refusal(**kwargs) -> dict:
    with pytest.raises(ValidationError) as refused:
        staging_job_create(**kwargs)
    return refused.value.message_dict


def test_create_pending_job_with_one_item_per_package(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing, note="for the paper")

    items = list(job.items.order_by("raw_package__name"))
    assert job.status == JobStatus.PENDING
    assert job.note == "for the paper"
    assert [i.raw_package for i in items] == sorted(topology.packages, key=lambda p: p.name)
    assert {i.state for i in items} == {StagedPackageState.PENDING}
    assert {i.source_location for i in items} == {topology.cologne_archive}


def test_create_empty_selection_is_refused(topology, alice):
    errors = refusal(owner=alice, raw_packages=[], destination_location=topology.cologne_processing)

    assert errors == {"raw_packages": ["Select at least one package to stage."]}


def test_create_not_archived_package_is_refused_and_nothing_created(topology, alice):
    loose = f.RawDataPackageFactory(name="loose.tar")
    f.RawDataPackageCopyFactory(raw_package=loose, location=topology.cologne_buffer)

    errors = refusal(owner=alice, raw_packages=[topology.packages[0], loose],
                     destination_location=topology.cologne_processing)

    assert "loose.tar" in errors["raw_packages"][0]
    assert "Not archived" in errors["raw_packages"][0]
    assert alice.staging_jobs.count() == 0


def test_create_deleted_archive_copy_counts_as_not_archived(topology, alice):
    package = topology.packages[0]
    # Recorded as deleted (the database refuses to mark a package's last verified copy deleted).
    locations = [(c.location, c.path) for c in package.copies.all()]
    package.copies.all().delete()
    for location, path in locations:
        f.RawDataPackageCopyFactory(raw_package=package, location=location, path=path, status=CopyStatus.DELETED)

    errors = refusal(owner=alice, raw_packages=[package], destination_location=topology.cologne_processing)

    assert package.name in errors["raw_packages"][0]


def test_create_destination_not_processing_is_refused(topology, alice):
    errors = refusal(owner=alice, raw_packages=topology.packages, destination_location=topology.cologne_buffer)

    assert errors == {"destination_location": [
        "cologne:buffer is a buffer location, not a processing area: choose a processing location."
    ]}


def test_create_lifetime_past_maximum_is_refused(topology, alice, settings):
    settings.STAGING_MAX_LIFETIME_DAYS = 30

    errors = refusal(owner=alice, raw_packages=topology.packages, destination_location=topology.cologne_processing,
                     lifetime=timedelta(days=31))

    assert errors == {"lifetime": ["The lifetime can be at most 30 days."]}


def test_create_lifetime_at_maximum_is_accepted(topology, alice, settings):
    settings.STAGING_MAX_LIFETIME_DAYS = 30

    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing, lifetime=timedelta(days=30))

    assert job.lifetime == timedelta(days=30)


def test_create_over_selection_bound_is_refused(topology, alice, settings):
    settings.STAGING_SELECTION_MAX = 2

    errors = refusal(owner=alice, raw_packages=topology.packages, destination_location=topology.cologne_processing)

    assert errors == {"raw_packages": ["A request can hold at most 2 packages; split it into several."]}


def test_create_prefers_archive_at_destination_site(topology, alice):
    package = topology.packages[0]
    f.RawDataPackageCopyFactory(raw_package=package, location=topology.cornell_archive)

    at_cornell = staging_job_create(owner=alice, raw_packages=[package],
                                    destination_location=topology.cornell_processing)
    at_cologne = staging_job_create(owner=alice, raw_packages=[package],
                                    destination_location=topology.cologne_processing)

    assert at_cornell.items.get().source_location == topology.cornell_archive
    assert at_cologne.items.get().source_location == topology.cologne_archive


def test_create_prefers_higher_priority_archive_within_a_site(topology, alice):
    package = archived_package(topology.cologne_archive_2)
    f.RawDataPackageCopyFactory(raw_package=package, location=topology.cologne_archive)

    job = staging_job_create(owner=alice, raw_packages=[package], destination_location=topology.cologne_processing)

    assert job.items.get().source_location == topology.cologne_archive


def test_create_reuses_alive_staged_packages(topology, alice):
    staged, fresh = topology.packages[0], topology.packages[1]
    stage_files_at(staged, topology.cologne_processing, expires_at=timezone.now() + timedelta(days=1))

    job = staging_job_create(owner=alice, raw_packages=[staged, fresh],
                             destination_location=topology.cologne_processing, lifetime=timedelta(days=7))

    states = dict(job.items.values_list("raw_package__name", "state"))
    assert states == {staged.name: StagedPackageState.REUSED, fresh.name: StagedPackageState.PENDING}
    assert job.status == JobStatus.PENDING
    expiries = set(RawDataFileCopy.objects.filter(raw_file__package=staged).values_list("expires_at", flat=True))
    assert len(expiries) == 1 and expiries.pop() > timezone.now() + timedelta(days=6)


@pytest.mark.parametrize("expired, status", [(True, CopyStatus.PRESENT), (False, CopyStatus.DELETED)])
def test_create_does_not_reuse_expired_or_deleted_copies(topology, alice, expired, status):
    package = topology.packages[0]
    when = timezone.now() + (timedelta(hours=-1) if expired else timedelta(days=1))
    stage_files_at(package, topology.cologne_processing, expires_at=when, status=status)

    job = staging_job_create(owner=alice, raw_packages=[package], destination_location=topology.cologne_processing)

    assert job.items.get().state == StagedPackageState.PENDING


def test_create_does_not_reuse_partly_staged_package(topology, alice):
    package = topology.packages[0]
    first = package.files.first()
    f.RawDataFileCopyFactory(raw_file=first, location=topology.cologne_processing)

    job = staging_job_create(owner=alice, raw_packages=[package], destination_location=topology.cologne_processing)

    assert job.items.get().state == StagedPackageState.PENDING


def test_create_all_reused_goes_to_ready_through_the_state_machine(topology, alice, django_capture_on_commit_callbacks):
    from django_fsm_log.models import StateLog

    package = topology.packages[0]
    stage_files_at(package, topology.cologne_processing)

    with django_capture_on_commit_callbacks(execute=True):
        job = staging_job_create(owner=alice, raw_packages=[package],
                                 destination_location=topology.cologne_processing)

    job.refresh_from_db()
    assert job.status == JobStatus.READY
    assert job.expires_at > timezone.now() + job.lifetime - timedelta(minutes=1)
    assert list(StateLog.objects.for_(job).values_list("transition", flat=True).order_by("pk")) == [
        "claim", "complete"
    ]
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} is ready"]


def test_cancel_pending_job_by_owner(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)

    staging_job_cancel(job=job, by=alice)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancel_failed_job_by_operator(topology, alice, operator_user, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    job = job_claim(job=job, worker="w")
    job_fail(job=job, lease_token=job.lease_token, error="boom")

    staging_job_cancel(job=job, by=operator_user)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancel_someone_elses_job_is_refused(topology, alice, bob):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)

    with pytest.raises(PermissionDenied):
        staging_job_cancel(job=job, by=bob)

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_cancel_active_job_is_refused_with_reason(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    job_claim(job=job, worker="w")

    with pytest.raises(TransitionNotAllowed, match="copying this request's data right now"):
        staging_job_cancel(job=job, by=alice)

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE


def test_cancel_stale_instance_sees_current_state(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    stale = type(job).objects.get(pk=job.pk)
    job_claim(job=job, worker="w")

    with pytest.raises(TransitionNotAllowed):
        staging_job_cancel(job=stale, by=alice)


def test_notify_failed_job_explains_error(topology, alice, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    job = job_claim(job=job, worker="w")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="rsync: write failed: No space left on device")

    sent = staging_job_notify(job)

    assert sent is True
    assert mail.outbox[0].subject == f"Your staging request #{job.pk} failed"
    assert "ran out of space" in mail.outbox[0].body
    assert mail.outbox[0].to == ["alice@example.org"]


def test_notify_pending_job_sends_nothing(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)

    assert staging_job_notify(job) is False
    assert mail.outbox == []


def test_failed_attempt_that_will_retry_sends_no_email(topology, alice, settings,
                                                        django_capture_on_commit_callbacks):
    settings.JOB_MAX_ATTEMPTS = 2
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)

    for _ in range(2):  # each report commits on its own
        with django_capture_on_commit_callbacks(execute=True):
            job = job_claim(job=job, worker="w")
            job, _ = job_fail(job=job, lease_token=job.lease_token, error="timeout")
        if job.status == JobStatus.PENDING:
            assert mail.outbox == []
            type(job).objects.filter(pk=job.pk).update(next_attempt_at=None)
            job.refresh_from_db()

    assert job.status == JobStatus.FAILED
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} failed"]


def test_items_mark_staged_marks_named_packages(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    first = topology.packages[0]

    changed = staging_items_mark_staged(job=job, names=[first.name])
    again = staging_items_mark_staged(job=job, names=[first.name])

    item = job.items.get(raw_package=first)
    assert (changed, again) == (1, 0)
    assert item.state == StagedPackageState.STAGED
    assert item.bytes_staged == first.size
    assert job.items.filter(state=StagedPackageState.PENDING).count() == 2


def test_items_mark_staged_unknown_name_is_refused(topology, alice):
    job = staging_job_create(owner=alice, raw_packages=topology.packages[:1],
                             destination_location=topology.cologne_processing)

    with pytest.raises(ValidationError) as refused:
        staging_items_mark_staged(job=job, names=[topology.packages[1].name])

    assert list(refused.value.message_dict) == ["items_done"]
    assert job.items.get().state == StagedPackageState.PENDING


def race_claim_and_cancel(job, owner) -> dict:
    """Claim and cancel ``job`` from two threads released at once; what each of them got."""
    barrier, results = threading.Barrier(2), {}

    def claim():
        barrier.wait()
        try:
            queryset = StageHandler().queryset().filter(pk=job.pk)
            results["claimed"] = claim_next(queryset=queryset, worker="w") is not None
        finally:
            connection.close()

    def cancel():
        barrier.wait()
        try:
            staging_job_cancel(job=type(job).objects.get(pk=job.pk), by=owner)
            results["cancelled"] = True
        except TransitionNotAllowed:
            results["cancelled"] = False
        finally:
            connection.close()

    threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_cancel_racing_a_claim_ends_in_exactly_one_outcome(topology, alice):
    for _ in range(5):
        job = staging_job_create(owner=alice, raw_packages=topology.packages[:1],
                                 destination_location=topology.cologne_processing)

        results = race_claim_and_cancel(job, alice)

        job.refresh_from_db()
        assert results["claimed"] != results["cancelled"]
        assert job.status == (JobStatus.ACTIVE if results["claimed"] else JobStatus.CANCELLED)


def test_on_failed_reads_the_status_afresh(topology, alice, settings, django_capture_on_commit_callbacks):
    settings.JOB_MAX_ATTEMPTS = 1
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)
    job_claim(job=job, worker="w")
    stale = type(job).objects.get(pk=job.pk)  # ACTIVE in memory, as after a bulk update elsewhere
    fresh = type(job).objects.get(pk=job.pk)
    job_fail(job=fresh, lease_token=fresh.lease_token, error="timeout")

    with django_capture_on_commit_callbacks(execute=True):
        StageHandler().on_failed(stale)

    assert stale.status == JobStatus.ACTIVE
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} failed"]


@pytest.mark.parametrize("how", ["fail", "expire"])
def test_failed_attempts_email_the_owner_once_failed(topology, alice, settings, django_capture_on_commit_callbacks,
                                                      how):
    from opsdb.services import job_expire

    settings.JOB_MAX_ATTEMPTS = 1
    job = staging_job_create(owner=alice, raw_packages=topology.packages,
                             destination_location=topology.cologne_processing)

    with django_capture_on_commit_callbacks(execute=True):
        job = job_claim(job=job, worker="w")
        if how == "fail":
            job_fail(job=job, lease_token=job.lease_token, error="No such file or directory")
        else:
            job_expire(job=job, now=timezone.now() + timedelta(days=2))

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} failed"]
