"""What one work request costs in SQL statements, pinned so that a regression shows.

Counts are as the test sees them: inside the test's transaction the request's own transaction is a
SAVEPOINT … RELEASE pair (two statements); served for real it is BEGIN … COMMIT instead. On
PostgreSQL a transition's job UPDATE, its state log and the DataTransferLog line are one statement
(``WITH updated AS (UPDATE …) INSERT …``, ``opsdb.prepared.update_row``); on SQLite one each.
The content-type cache and the token cache are warm, as in a server after a worker's first
request: authentication then reads nothing (``opsdb/tokens.py``).
"""

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django_fsm_log.models import StateLog

from opsdb import roles
from opsdb.choices import JobStatus
from opsdb.models import DataTransferLog, WorkerProfile
from opsdb.services import job_claim, job_complete, job_fail
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.apiclient import worker_client

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"
# savepoint · SELECT … FOR UPDATE SKIP LOCKED · UPDATE of the job with its state log (SQLite: two) · release ·
# the job with its payload
CLAIM_QUERIES = {"postgresql": 5, "sqlite": 6}
# savepoint · the job locked with its raw package and archive location · the copies already there
# (a deleted one is restored, logged) · copy upsert · UPDATE of the job with its state log and DataTransferLog
# line (SQLite: three) · release
COMPLETE_QUERIES = {"postgresql": 6, "sqlite": 8}
# UPDATE of the job with its state log and DataTransferLog line (SQLite: three)
LOCKED_COMPLETE_QUERIES = {"postgresql": 1, "sqlite": 3}
# savepoint · the job locked · release: the repeat changes nothing
REPEATED_COMPLETE_QUERIES = 3
# savepoint · the job locked · state log · UPDATE of the job · DataTransferLog line · release
FAIL_QUERIES = 6
# the job · the conditional UPDATE that extends the lease
HEARTBEAT_QUERIES = 2
# the token with its user and role groups · the worker's sites · its last use (at most once a minute)
FIRST_REQUEST_TOKEN_QUERIES = 3


@pytest.fixture(autouse=True)
def warm_content_types():
    ContentType.objects.get_for_model(LongTermArchiveTransfer)


def warm(client):
    """The worker's first request: its token, roles and sites are read and cached."""
    assert client.get("/api/v1/sites/").status_code == 200
    return client


def claim(client):
    return client.post(CLAIM, {"worker": "w1", "kinds": ["archive"]}, format="json")


def report(client, claimed: dict, action: str, **body):
    return client.post(f"/api/v1/work/archive/{claimed['id']}/{action}/",
                       {"lease_token": claimed["lease_token"], **body}, format="json")


def complete(client, claimed: dict):
    return report(client, claimed, "complete", checksum=claimed["raw_package"]["checksum"])


def test_claim_request_queries_are_pinned(django_assert_num_queries):
    f.LongTermArchiveTransferFactory()
    client = warm(worker_client())

    with django_assert_num_queries(CLAIM_QUERIES[connection.vendor]):
        response = claim(client)

    assert response.status_code == 200
    assert StateLog.objects.filter(transition="claim").count() == 1


def test_claim_request_by_site_restricted_worker_reads_its_sites_once(django_assert_num_queries):
    job = f.LongTermArchiveTransferFactory()
    client = worker_client(sites=[job.source_location.site])

    with django_assert_num_queries(FIRST_REQUEST_TOKEN_QUERIES + CLAIM_QUERIES[connection.vendor]):
        response = claim(client)
    f.LongTermArchiveTransferFactory(source_location=job.source_location, destination_location=job.destination_location)
    with django_assert_num_queries(CLAIM_QUERIES[connection.vendor]):
        again = claim(client)

    assert response.json()["id"] == job.pk
    assert again.status_code == 200


def test_complete_request_queries_are_pinned(django_assert_num_queries):
    job = f.LongTermArchiveTransferFactory()
    client = worker_client()
    claimed = claim(client).json()

    with django_assert_num_queries(COMPLETE_QUERIES[connection.vendor]):
        response = complete(client, claimed)

    job.refresh_from_db()
    assert response.status_code == 200
    assert job.status == JobStatus.COMPLETED
    assert job.raw_package.copies.get().location == job.destination_location
    assert StateLog.objects.filter(transition="complete", object_id=job.pk).count() == 1
    assert DataTransferLog.objects.filter(object_id=job.pk, message__contains="completed").count() == 1


def test_repeated_complete_request_queries_are_pinned(django_assert_num_queries):
    f.LongTermArchiveTransferFactory()
    client = worker_client()
    claimed = claim(client).json()
    assert complete(client, claimed).status_code == 200

    with django_assert_num_queries(REPEATED_COMPLETE_QUERIES):
        response = complete(client, claimed)

    assert response.status_code == 200
    assert StateLog.objects.filter(transition="complete").count() == 1


def test_fail_request_queries_are_pinned(django_assert_num_queries):
    job = f.LongTermArchiveTransferFactory()
    client = worker_client()
    claimed = claim(client).json()

    with django_assert_num_queries(FAIL_QUERIES):
        response = report(client, claimed, "fail", error="tape offline")

    job.refresh_from_db()
    assert response.json()["status"] == JobStatus.PENDING
    assert job.attempts == 1


def test_heartbeat_request_queries_are_pinned(django_assert_num_queries):
    job = f.LongTermArchiveTransferFactory()
    client = worker_client()
    claimed = claim(client).json()

    with django_assert_num_queries(HEARTBEAT_QUERIES):
        response = report(client, claimed, "heartbeat", bytes_done=7, lease_seconds=3600)

    job.refresh_from_db()
    assert response.status_code == 200
    assert response.json()["lease_expires_at"] == job.lease_expires_at.isoformat().replace("+00:00", "Z")
    assert job.bytes_done == 7


def test_complete_with_bad_checksum_after_locked_read_is_400_and_nothing_changed():
    job = f.LongTermArchiveTransferFactory()
    client = worker_client()
    claimed = claim(client).json()

    response = report(client, claimed, "complete", checksum="ee" * 32)

    job.refresh_from_db()
    assert response.status_code == 400
    assert job.status == JobStatus.ACTIVE
    assert not job.raw_package.copies.exists()
    assert not StateLog.objects.filter(transition="complete").exists()
    assert not DataTransferLog.objects.filter(object_id=job.pk).exists()


def test_worker_removed_from_its_group_is_refused_on_its_next_request():
    f.LongTermArchiveTransferFactory()
    client = worker_client("w")
    assert claim(client).status_code == 200

    Group.objects.get(name=roles.WORKERS).user_set.clear()

    assert claim(client).status_code == 403


def test_worker_restricted_to_a_site_after_its_first_request_sees_only_that_site():
    elsewhere = f.LongTermArchiveTransferFactory()
    client = worker_client("w")
    assert claim(client).json()["id"] == elsewhere.pk
    mine = f.LongTermArchiveTransferFactory()
    other = f.LongTermArchiveTransferFactory()

    WorkerProfile.objects.get(user__username="w").sites.set([mine.source_location.site])

    assert claim(client).json()["id"] == mine.pk
    assert claim(client).status_code == 204
    other.refresh_from_db()
    assert other.status == JobStatus.PENDING


def test_inactive_worker_token_is_401():
    client = worker_client("w")
    User.objects.filter(username="w").update(is_active=False)

    assert claim(client).status_code == 401


REPORTS = {"complete": lambda job: job_complete(job=job, lease_token=job.lease_token, locked=True),
           "fail": lambda job: job_fail(job=job, lease_token=job.lease_token, error="x", locked=True)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", sorted(REPORTS))
def test_report_service_locked_outside_a_transaction_is_refused(action):
    job = job_claim(job=f.LongTermArchiveTransferFactory(), worker="w1")

    with pytest.raises(RuntimeError):
        REPORTS[action](job)

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE


def test_report_service_locked_in_the_callers_transaction_reads_the_job_once(django_assert_num_queries):
    job = job_claim(job=f.LongTermArchiveTransferFactory(), worker="w1")

    with transaction.atomic():
        locked = LongTermArchiveTransfer.objects.select_for_update().get(pk=job.pk)
        # no second read, no savepoint
        with django_assert_num_queries(LOCKED_COMPLETE_QUERIES[connection.vendor]):
            done, changed = job_complete(job=locked, lease_token=job.lease_token, locked=True)

    assert (done.status, changed) == (JobStatus.COMPLETED, True)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["archive", "stage", "verify", "package", "transfer", "unpack", "delete"])
def test_claim_reads_the_waiting_jobs_in_claim_order_from_an_index(kind):
    """A claim can read the first waiting jobs of the claim-order index in order; it need not sort every waiting job.

    The test tables are nearly empty, where another index plus a Sort of a few rows costs the same to the
    planner and its pick follows the statistics other tests left: sequential scans and sorts are priced out,
    so the plan shows whether an index serves the claim's filter and order (with many waiting jobs and the
    claim's LIMIT, the planner takes it by cost: 31 ms -> 0.07 ms at 19,000 waiting archive jobs).
    """
    from django.utils import timezone

    from opsdb.registry import job_kinds
    from opsdb.services import ClaimQuery

    query = ClaimQuery(job_kinds[kind], None, None)
    sql, params = query.queryset().due(timezone.now()).order_by("-priority", "created_at", "pk")[:20] \
        .select_for_update(skip_locked=True, of=("self",)).query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "_claim_order" in plan, plan
    assert "Sort" not in plan, plan
