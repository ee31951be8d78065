"""Hot reads and writes with SQL made once (``opsdb.prepared``): same rows and instances as the ORM's, or the ORM."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransition
from django_fsm_log.models import StateLog

from opsdb import services
from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import DataTransferLog, RawDataPackageCopy
from opsdb.prepared import PreparedQuery, insert_rows, update_row
from opsdb.registry import job_kinds
from opsdb.work import job_payload
from staging.archive_work import ArchiveHandler
from staging.models import LongTermArchiveTransfer
from tests import factories as f

pytestmark = pytest.mark.django_db


def payload_query():
    handler = job_kinds["archive"]
    return PreparedQuery(lambda pks: handler.queryset().filter(pk__in=pks).order_by("pk"))


def test_prepared_read_gives_what_the_queryset_gives_related_objects_and_annotations_included():
    handler: ArchiveHandler = job_kinds["archive"]
    jobs = [f.LongTermArchiveTransferFactory() for _ in range(3)]
    RawDataPackageCopy.objects.create(raw_package=jobs[1].raw_package, location=jobs[1].source_location,
                                      path="products/p.tar", status=CopyStatus.PRESENT)
    query = payload_query()
    assert query.is_prepared([jobs[0].pk, jobs[1].pk])

    for _ in range(2):  # the first call prepares, the second runs the SQL made then
        prepared = query([jobs[1].pk, jobs[0].pk])
        plain = list(handler.queryset().filter(pk__in=[jobs[1].pk, jobs[0].pk]).order_by("pk"))
        assert [job_payload(handler, job) for job in prepared] == [job_payload(handler, job) for job in plain]
    assert prepared[1].source_path == "products/p.tar"  # the annotation's value
    assert prepared[0].source_path is None


def test_a_list_of_another_length_is_another_shape(django_assert_num_queries):
    jobs = [f.LongTermArchiveTransferFactory() for _ in range(3)]
    query = payload_query()
    assert [job.pk for job in query([jobs[0].pk])] == [jobs[0].pk]
    with django_assert_num_queries(1):
        assert [job.pk for job in query([job.pk for job in jobs])] == [job.pk for job in jobs]
    assert query([]) == []  # nothing to ask the database: Django's answer


def test_a_build_that_reads_the_clock_is_not_prepared_and_still_answers_right():
    job = f.LongTermArchiveTransferFactory()
    query = PreparedQuery(lambda pk: LongTermArchiveTransfer.objects.filter(pk=pk, created_at__lte=timezone.now()))
    assert not query.is_prepared(job.pk)
    assert [found.pk for found in query(job.pk)] == [job.pk]


def test_a_value_that_does_not_reach_the_parameters_as_given_is_not_prepared():
    job = f.LongTermArchiveTransferFactory(lease_holder="cologne-1")
    query = PreparedQuery(lambda name: LongTermArchiveTransfer.objects.filter(lease_holder__contains=name))
    assert not query.is_prepared("logne")
    assert [found.pk for found in query("logne")] == [job.pk]
    assert query("bonn") == []


def test_datetimes_are_adapted_as_the_orm_adapts_them():
    early = f.LongTermArchiveTransferFactory(created_at=timezone.now() - timedelta(days=2))
    f.LongTermArchiveTransferFactory()
    query = PreparedQuery(lambda before: LongTermArchiveTransfer.objects.filter(created_at__lt=before))
    assert query.is_prepared(timezone.now())
    assert [job.pk for job in query(timezone.now() - timedelta(days=1))] == [early.pk]


@pytest.mark.parametrize("sites", [False, True])
@pytest.mark.parametrize("methods", [False, True])
def test_every_kinds_claim_reads_are_prepared(sites, methods):
    """A kind whose claim filter reads the clock or the database while it is built would compile at every claim."""
    site = f.SiteFactory()
    now = timezone.now()
    for handler in job_kinds:
        query = services.ClaimQuery(handler, [site.pk] if sites else None, ["rsync"] if methods else None)
        with transaction.atomic():
            assert query._query("lock").is_prepared(now, *query.values), handler.kind
        assert query._query("head").is_prepared(now, *query.values), handler.kind


def test_claim_queries_lock_the_due_jobs_in_claim_order():
    now = timezone.now()
    later = f.LongTermArchiveTransferFactory(created_at=now - timedelta(minutes=1))
    first = f.LongTermArchiveTransferFactory(created_at=now - timedelta(minutes=5))
    f.LongTermArchiveTransferFactory(next_attempt_at=now + timedelta(minutes=5))  # not due yet
    urgent = f.LongTermArchiveTransferFactory(priority=5)
    query = services.ClaimQuery(job_kinds["archive"], None, None)
    with transaction.atomic():
        assert [job.pk for job in query.lock_due(now, 10)] == [urgent.pk, first.pk, later.pk]
        assert query.lock_first(now).pk == urgent.pk
    assert query.first_due_at(now) == urgent.created_at


def test_insert_rows_upserts_as_bulk_create_does():
    copy = f.RawDataPackageCopyFactory(status=CopyStatus.DELETED, path="old")
    other = f.RawDataPackageFactory()
    insert_rows([
        RawDataPackageCopy(raw_package=copy.raw_package, location=copy.location, path="new",
                           status=CopyStatus.PRESENT),
        RawDataPackageCopy(raw_package=other, location=copy.location, path="fresh", status=CopyStatus.PRESENT),
    ], unique_fields=["raw_package", "location"], update_fields=["path", "status", "updated_at"])
    copy.refresh_from_db()
    assert (copy.path, copy.status) == ("new", CopyStatus.PRESENT)
    assert RawDataPackageCopy.objects.get(raw_package=other).path == "fresh"


def test_update_row_writes_only_its_fields_and_only_where_the_row_still_matches():
    job = f.LongTermArchiveTransferFactory(lease_holder="a", last_error="kept")
    stale = LongTermArchiveTransfer.objects.get(pk=job.pk)
    job.lease_holder, job.last_error = "b", "not written"
    assert update_row(job, ["lease_holder"], where={"status": JobStatus.PENDING}) == 1
    assert update_row(job, ["lease_holder"], where={"status": JobStatus.ACTIVE}) == 0
    stale.refresh_from_db()
    assert (stale.lease_holder, stale.last_error) == ("b", "kept")
    assert stale.updated_at >= job.created_at  # auto_now refreshed


def test_a_saved_transition_writes_what_the_kinds_hooks_set_on_the_job_too():
    job = f.LongTermArchiveTransferFactory()
    job.priority = 7  # e.g. a kind's apply_result setting a field of the job before the transition
    job.claim(worker="w", token="t", expires_at=timezone.now())
    with transaction.atomic():
        services.save_transition(job, JobStatus.PENDING)
    job.refresh_from_db()
    assert (job.status, job.lease_holder, job.priority) == (JobStatus.ACTIVE, "w", 7)


def test_a_transition_saved_over_a_changed_status_is_refused_and_nothing_is_written():
    job = f.LongTermArchiveTransferFactory()
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    job.claim(worker="w", token="t", expires_at=timezone.now())
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        services.save_transition(job, JobStatus.PENDING)
    assert LongTermArchiveTransfer.objects.filter(Q(pk=job.pk), ~Q(lease_holder="w")).exists()


def test_rows_written_with_an_update_are_inserted_only_if_the_row_was_updated():
    job = f.LongTermArchiveTransferFactory()
    line = services.job_log_line(job=job, message="with the update")
    refused = services.job_log_line(job=job, message="not without it")

    with transaction.atomic():
        changed = update_row(job, ["lease_holder"], where={"status": JobStatus.PENDING}, also=[line])
        unchanged = update_row(job, ["lease_holder"], where={"status": JobStatus.ACTIVE}, also=[refused])

    assert (changed, unchanged) == (1, 0)
    assert list(DataTransferLog.objects.filter(object_id=job.pk).values_list("message", flat=True)) == [
        "with the update"]


def test_a_transition_saved_with_its_state_log_and_a_log_line_writes_all_three():
    job = f.LongTermArchiveTransferFactory()
    line = services.job_log_line(job=job, message="claimed here")

    with transaction.atomic():
        services.transition_and_save(job, lambda: job.claim(worker="w", token="t", expires_at=timezone.now(),
                                                            description="claimed by w"), also=[line])

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE
    assert list(StateLog.objects.filter(object_id=job.pk).values_list("transition", "description")) == [
        ("claim", "claimed by w")]
    assert DataTransferLog.objects.filter(object_id=job.pk, message="claimed here").count() == 1

