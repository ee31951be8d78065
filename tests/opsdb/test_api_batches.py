"""Batches of the work protocol: ``max_jobs`` on claim and the batch report (work/report/)."""

from datetime import timedelta

import pytest
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import JobStatus
from opsdb.models import DataTransferLog, RawDataPackageCopy
from opsdb.recovery import expire_leases
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.apiclient import token_client, worker, worker_client
from tests.opsdb.test_api_concurrency import archive_jobs, run_workers
from transfers.models import DataTransfer, DataTransferPackage, DataTransferPackageCopy

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"
REPORT = "/api/v1/work/report/"


def claim_batch(client, max_jobs: int, name: str = "w1", **body):
    return client.post(CLAIM, {"worker": name, "kinds": ["archive"], "max_jobs": max_jobs, **body}, format="json")


def completed(job: dict, **extra) -> dict:
    return {"kind": job["kind"], "id": job["id"], "outcome": "complete", "lease_token": job["lease_token"],
            "checksum": job["raw_package"]["checksum"], **extra}


def report(client, items: list):
    return client.post(REPORT, {"reports": items}, format="json")


def statuses() -> dict[str, int]:
    return dict(LongTermArchiveTransfer.objects.values_list("status").annotate(n=Count("pk")))


# -- claim with max_jobs -------------------------------------------------------------------------


def test_claim_with_max_jobs_gets_that_many_jobs_each_under_its_own_lease():
    ids = archive_jobs(5)
    client = worker_client("w1")

    response = claim_batch(client, 3)

    jobs = response.json()["jobs"]
    assert response.status_code == 200
    assert [job["id"] for job in jobs] == ids[:3]  # the claim order: oldest first
    assert len({job["lease_token"] for job in jobs}) == 3
    assert {(job["kind"], job["attempt"]) for job in jobs} == {("archive", 1)}
    assert all(job["raw_package"]["checksum"] for job in jobs)
    assert statuses() == {JobStatus.ACTIVE: 3, JobStatus.PENDING: 2}
    logs = StateLog.objects.filter(transition="claim")
    assert sorted(logs.values_list("object_id", flat=True)) == ids[:3]
    assert set(logs.values_list("source_state", "state", "description")) == {
        (JobStatus.PENDING, JobStatus.ACTIVE, "claimed by w1")}


def test_claim_with_max_jobs_gets_what_there_is_then_204():
    archive_jobs(2)
    client = worker_client("w1")

    first = claim_batch(client, 10)
    second = claim_batch(client, 10)

    assert len(first.json()["jobs"]) == 2
    assert second.status_code == 204


def test_claim_without_max_jobs_answers_one_job_as_before():
    archive_jobs(2)

    response = worker_client("w1").post(CLAIM, {"worker": "w1"}, format="json")

    assert response.status_code == 200
    assert "jobs" not in response.json()
    assert response.json()["kind"] == "archive"


@pytest.mark.parametrize("max_jobs", [0, -1, 101, "many", None, 10**30])
def test_claim_with_max_jobs_out_of_range_is_400_and_claims_nothing(max_jobs):
    archive_jobs(2)

    response = claim_batch(worker_client("w1"), max_jobs)

    assert response.status_code == 400
    assert "max_jobs" in response.json()
    assert statuses() == {JobStatus.PENDING: 2}


@override_settings(WORK_BATCH_MAX_JOBS=4)
def test_claim_limit_is_the_setting():
    archive_jobs(6)
    client = worker_client("w1")

    assert claim_batch(client, 5).status_code == 400
    assert len(claim_batch(client, 4).json()["jobs"]) == 4


def test_repeated_batch_claim_with_the_same_request_id_gets_the_same_jobs_and_leases():
    archive_jobs(5)
    client = worker_client("w1")

    first = claim_batch(client, 3, request_id="r-1").json()["jobs"]
    again = claim_batch(client, 3, request_id="r-1").json()["jobs"]

    assert sorted((j["id"], j["lease_token"]) for j in again) == sorted((j["id"], j["lease_token"]) for j in first)
    assert statuses() == {JobStatus.ACTIVE: 3, JobStatus.PENDING: 2}


def test_batch_claim_respects_the_route_limit():
    route = f.RouteFactory(max_concurrent=2)
    origin = f.DataLocationFactory(site=route.origin_site)
    destination = f.DataLocationFactory(site=route.destination_site)
    for i in range(5):
        package = f.DataTransferPackageFactory(name=f"dtp-{i}.tar", origin_location=origin)
        f.DataTransferFactory(transfer_package=package, route=route, origin_location=origin,
                              destination_location=destination, method=route.method)

    response = worker_client("w1").post(CLAIM, {"worker": "w1", "kinds": ["transfer"], "max_jobs": 5},
                                        format="json")

    assert len(response.json()["jobs"]) == 2
    assert DataTransfer.objects.filter(status=JobStatus.ACTIVE).count() == 2


def test_batch_claim_takes_kinds_in_claim_priority_order():
    archive_jobs(2)
    f.StagingJobPackageFactory()  # a scientist's stage job comes first

    response = worker_client("w1").post(CLAIM, {"worker": "w1", "kinds": ["stage", "archive"], "max_jobs": 10},
                                        format="json")

    assert [job["kind"] for job in response.json()["jobs"]] == ["stage", "archive", "archive"]


def test_batch_claim_by_a_site_restricted_worker_gets_only_its_sites_jobs():
    archive_jobs(2)  # at "ccat"
    elsewhere = f.SiteFactory(name="cologne")

    response = claim_batch(token_client(worker("w1", sites=[elsewhere])), 5)

    assert response.status_code == 204


# -- batch report --------------------------------------------------------------------------------


def test_batch_report_completes_every_job_and_records_each_transition():
    ids = archive_jobs(3)
    client = worker_client("w1")
    jobs = claim_batch(client, 3).json()["jobs"]

    response = report(client, [completed(job, log_path=f"logs/{job['id']}.log") for job in jobs])

    assert response.status_code == 200
    assert [(r["index"], r["id"], r["code"], r["status"]) for r in response.json()["results"]] == [
        (i, job_id, 200, JobStatus.COMPLETED) for i, job_id in enumerate(ids)]
    assert statuses() == {JobStatus.COMPLETED: 3}
    completes = StateLog.objects.filter(transition="complete")
    assert sorted(completes.values_list("object_id", flat=True)) == ids
    assert set(completes.values_list("by__username", "description")) == {("w1", "completed by w1")}
    assert sorted(LongTermArchiveTransfer.objects.values_list("log_path", flat=True)) == [
        f"logs/{i}.log" for i in ids]
    assert RawDataPackageCopy.objects.count() == 3
    assert DataTransferLog.objects.filter(message="archive completed by w1").count() == 3


def test_batch_report_answers_each_item_on_its_own():
    ids = archive_jobs(4)
    client = worker_client("w1")
    jobs = claim_batch(client, 4).json()["jobs"]
    good, bad_checksum, lost, failed = jobs
    LongTermArchiveTransfer.objects.filter(pk=lost["id"]).update(lease_token="someone-else")

    response = report(client, [
        completed(good),
        {**completed(bad_checksum), "checksum": "00" * 32},
        completed(lost),
        {"kind": "archive", "id": failed["id"], "outcome": "fail", "lease_token": failed["lease_token"],
         "error": "disk full"},
        {"kind": "archive", "id": 10**9, "outcome": "complete", "lease_token": "x", "checksum": "ab"},
        {"kind": "archive", "id": good["id"]},
        "not an object",
        {"kind": "nonsense", "id": 1, "outcome": "complete"},
    ])

    results = response.json()["results"]
    assert response.status_code == 200
    assert [r["code"] for r in results] == [200, 400, 409, 200, 404, 400, 400, 400]
    assert results[1]["errors"] == {"checksum": [results[1]["errors"]["checksum"][0]]}
    assert (results[2]["status"], results[3]["status"]) == (JobStatus.ACTIVE, JobStatus.PENDING)
    assert set(results[5]["errors"]) == {"outcome"}
    assert results[6]["errors"] == {"non_field_errors": ["Send a JSON object."]}
    assert set(results[7]["errors"]) == {"kind"}
    states = dict(LongTermArchiveTransfer.objects.values_list("pk", "status"))
    assert states == {ids[0]: JobStatus.COMPLETED, ids[1]: JobStatus.ACTIVE, ids[2]: JobStatus.ACTIVE,
                      ids[3]: JobStatus.PENDING}
    assert list(RawDataPackageCopy.objects.values_list("raw_package__archive_transfers", flat=True)) == [ids[0]]
    assert StateLog.objects.filter(transition__in=["complete", "fail"]).count() == 2


def test_the_same_batch_sent_twice_changes_nothing_more():
    archive_jobs(3)
    client = worker_client("w1")
    good, lost, failed = claim_batch(client, 3).json()["jobs"]
    LongTermArchiveTransfer.objects.filter(pk=lost["id"]).update(lease_token="someone-else")
    batch = [completed(good), completed(lost),
             {"kind": "archive", "id": failed["id"], "outcome": "fail", "lease_token": failed["lease_token"],
              "error": "disk full"}]
    first = report(client, batch).json()["results"]
    counts = (StateLog.objects.count(), DataTransferLog.objects.count(), RawDataPackageCopy.objects.count())
    rows = list(LongTermArchiveTransfer.objects.order_by("pk").values())

    again = report(client, batch).json()["results"]

    assert again == first
    assert (StateLog.objects.count(), DataTransferLog.objects.count(), RawDataPackageCopy.objects.count()) == counts
    assert list(LongTermArchiveTransfer.objects.order_by("pk").values()) == rows


def test_a_job_twice_in_one_batch_is_400_the_second_time():
    archive_jobs(1)
    client = worker_client("w1")
    [job] = claim_batch(client, 1).json()["jobs"]

    results = report(client, [completed(job), completed(job)]).json()["results"]

    assert [r["code"] for r in results] == [200, 400]
    assert results[1]["errors"] == {"id": ["This job is reported twice in the batch."]}
    assert StateLog.objects.filter(transition="complete").count() == 1


@pytest.mark.parametrize("body", [{}, {"reports": []}, {"reports": "x"}, [], {"reports": [{}] * 101}])
def test_malformed_batch_report_is_400(body):
    response = worker_client("w1").post(REPORT, body, format="json")

    assert response.status_code == 400


def test_batch_report_about_a_job_at_another_site_is_404_for_a_restricted_worker():
    archive_jobs(1)  # at "ccat"
    [job] = claim_batch(worker_client("everywhere"), 1).json()["jobs"]
    restricted = token_client(worker("w2", sites=[f.SiteFactory(name="cologne")]))

    [result] = report(restricted, [completed(job)]).json()["results"]

    assert result["code"] == 404
    assert statuses() == {JobStatus.ACTIVE: 1}


def test_batch_report_of_a_kind_with_job_fields_in_its_result_saves_them():
    """``package`` results set the package's size and checksum: the bulk UPDATE writes what apply changed."""
    origin = f.DataLocationFactory()
    for i in range(2):
        f.DataTransferPackageFactory(name=f"dtp-{i}.tar", origin_location=origin, size=None, checksum="")
    client = worker_client("w1")
    jobs = client.post(CLAIM, {"worker": "w1", "kinds": ["package"], "max_jobs": 2}, format="json").json()["jobs"]

    results = report(client, [
        {"kind": "package", "id": jobs[0]["id"], "outcome": "complete", "lease_token": jobs[0]["lease_token"],
         "size": 123, "checksum": "ab" * 32},
        {"kind": "package", "id": jobs[1]["id"], "outcome": "complete", "lease_token": jobs[1]["lease_token"],
         "size": -1, "checksum": "cd" * 32},
    ]).json()["results"]

    assert [r["code"] for r in results] == [200, 400]
    packages = DataTransferPackage.objects.order_by("pk")
    assert [(p.status, p.size, p.checksum) for p in packages] == [
        (JobStatus.COMPLETED, 123, "ab" * 32), (JobStatus.ACTIVE, None, "")]
    assert DataTransferPackageCopy.objects.count() == 1


def test_batch_report_statements_do_not_grow_with_the_batch(django_assert_max_num_queries, django_assert_num_queries):
    archive_jobs(4)
    client = worker_client("w1")
    jobs = claim_batch(client, 4).json()["jobs"]
    report(client, [completed(jobs[0])])  # warm: the token and content types are cached

    with django_assert_max_num_queries(20) as one:
        report(client, [completed(jobs[1])])
    with django_assert_num_queries(len(one.captured_queries)):
        report(client, [completed(job) for job in jobs[2:]])


def test_batch_claim_statements_do_not_grow_with_the_batch(django_assert_max_num_queries, django_assert_num_queries):
    archive_jobs(5)
    client = worker_client("w1")
    claim_batch(client, 1)  # warm

    with django_assert_max_num_queries(20) as one:
        assert len(claim_batch(client, 1).json()["jobs"]) == 1
    with django_assert_num_queries(len(one.captured_queries)):
        assert len(claim_batch(client, 3).json()["jobs"]) == 3


# -- concurrency and dying workers ---------------------------------------------------------------


def batch_loop(batch_size: int):
    def loop(client, name, done, errors):
        while True:
            response = claim_batch(client, batch_size, name=name)
            if response.status_code == 204:
                return
            if response.status_code != 200:
                errors.append((response.status_code, response.content[:200]))
                return
            jobs = response.json()["jobs"]
            answer = report(client, [completed(job) for job in jobs])
            codes = {r["code"] for r in answer.json()["results"]}
            if answer.status_code != 200 or codes != {200}:
                errors.append((answer.status_code, answer.content[:300]))
            done.extend(job["id"] for job in jobs)

    return loop


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_16_workers_claiming_batches_at_once_never_get_a_job_twice_on_postgres():
    job_ids = archive_jobs(600)

    done, errors = run_workers(16, batch_loop(20))

    assert errors == []
    assert sorted(done) == sorted(job_ids)  # none lost, none twice
    assert statuses() == {JobStatus.COMPLETED: 600}
    claims = StateLog.objects.filter(transition="claim").values("object_id").annotate(n=Count("pk"))
    assert claims.count() == 600
    assert {row["n"] for row in claims} == {1}
    assert StateLog.objects.filter(transition="complete").count() == 600


@pytest.mark.django_db(transaction=True)
def test_4_workers_claiming_batches_at_once_never_get_a_job_twice():
    job_ids = archive_jobs(60)

    done, errors = run_workers(4, batch_loop(7))

    assert errors == []
    assert sorted(done) == sorted(job_ids)
    assert statuses() == {JobStatus.COMPLETED: 60}


def test_worker_dying_mid_batch_its_unreported_jobs_go_back_and_its_late_report_is_409():
    ids = archive_jobs(4)
    dying, other = worker_client("dying"), worker_client("other")
    jobs = claim_batch(dying, 4, name="dying", lease_seconds=60).json()["jobs"]
    report(dying, [completed(job) for job in jobs[:2]])  # then the worker dies
    LongTermArchiveTransfer.objects.filter(status=JobStatus.ACTIVE).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))

    expire_leases(now=timezone.now())
    LongTermArchiveTransfer.objects.filter(status=JobStatus.PENDING).update(next_attempt_at=None)  # backoff over
    taken_over = claim_batch(other, 4, name="other").json()["jobs"]
    late = report(dying, [completed(job) for job in jobs[2:]]).json()["results"]
    finished = report(other, [completed(job) for job in taken_over]).json()["results"]

    assert [(job["id"], job["attempt"]) for job in taken_over] == [(ids[2], 2), (ids[3], 2)]
    assert [(r["code"], r["status"]) for r in late] == [(409, JobStatus.ACTIVE)] * 2
    assert [r["code"] for r in finished] == [200, 200]
    assert statuses() == {JobStatus.COMPLETED: 4}
    assert RawDataPackageCopy.objects.count() == 4


def test_a_batch_claimed_job_is_heartbeaten_and_reported_alone_with_its_own_token():
    archive_jobs(2)
    client = worker_client("w1")
    first, second = claim_batch(client, 2).json()["jobs"]

    beat = client.post(f"/api/v1/work/archive/{second['id']}/heartbeat/", {"lease_token": second["lease_token"]},
                       format="json")
    swapped = client.post(f"/api/v1/work/archive/{second['id']}/heartbeat/", {"lease_token": first["lease_token"]},
                          format="json")
    done = client.post(f"/api/v1/work/archive/{first['id']}/complete/",
                       {"lease_token": first["lease_token"], "checksum": first["raw_package"]["checksum"]},
                       format="json")

    assert (beat.status_code, swapped.status_code, done.status_code) == (200, 409, 200)
    assert LongTermArchiveTransfer.objects.get(pk=second["id"]).lease_token == second["lease_token"]


@pytest.mark.parametrize(("item", "plain"), [
    ({"kind": "archive", "id": 7, "outcome": "complete"}, True),
    ({"kind": "archive", "id": 2**63 - 1, "outcome": "fail"}, True),
    ({"kind": "archive", "id": "7", "outcome": "complete"}, False),
    ({"kind": "archive", "id": 7.0, "outcome": "complete"}, False),
    ({"kind": "archive", "id": True, "outcome": "complete"}, False),
    ({"kind": "archive", "id": 0, "outcome": "complete"}, False),
    ({"kind": "archive", "id": 2**63, "outcome": "complete"}, False),
    ({"kind": "nonsense", "id": 7, "outcome": "complete"}, False),
    ({"kind": "archive", "id": 7, "outcome": "done"}, False),
    ({"kind": "archive", "id": 7}, False),
    ({"id": 7, "outcome": "complete"}, False),
    ({"kind": ["archive"], "id": 7, "outcome": "complete"}, False),
])
def test_report_item_head_checked_in_plain_python_agrees_with_its_serializer(item, plain):
    """Well-formed heads are read in plain Python with the serializer's values; the rest go to the serializer."""
    from opsdb.api.work import ReportItem, plain_head

    serializer = ReportItem(data=item)
    valid = serializer.is_valid()

    head = plain_head(item)

    assert (head is not None) == plain
    if plain:
        assert valid
        assert head == dict(serializer.validated_data)
