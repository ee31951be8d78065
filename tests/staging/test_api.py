"""The staging-jobs API for scientists: create, list, read, cancel (session or token)."""

import json

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from opsdb.choices import JobStatus
from opsdb.services import job_claim
from opsdb.tokens import api_token_create
from staging.api.serializers import StagingJobPackageSerializer
from staging.choices import StagedPackageState
from staging.models import StagingJob
from staging.services import staging_job_create
from tests import factories as f

pytestmark = pytest.mark.django_db

URL = "/api/v1/staging-jobs/"


@pytest.fixture
def api(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


def make_job(owner, topology, packages=None):
    return staging_job_create(owner=owner, raw_packages=packages or topology.packages,
                              destination_location=topology.cologne_processing)


def test_create_with_ids_returns_201(api, topology, alice):
    response = api.post(URL, {"raw_packages": [str(p.pk) for p in topology.packages],
                              "destination_location": topology.cologne_processing.pk,
                              "lifetime_days": 5, "note": "quick look"}, format="json")

    job = StagingJob.objects.get()
    assert response.status_code == 201
    assert response.json()["id"] == job.pk
    assert response.json()["status"] == "PENDING"
    assert response.json()["lifetime_days"] == 5
    assert response.json()["progress"] == {"packages_total": 3, "packages_done": 0,
                                           "bytes_total": 15 * 10**9, "bytes_done": 0}
    assert job.owner == alice


def test_create_with_names_and_site_location(api, topology):
    response = api.post(URL, {"raw_packages": [p.name for p in topology.packages[:2]],
                              "destination_location": "cornell:processing"}, format="json")

    assert response.status_code == 201
    assert response.json()["destination_location"] == "cornell:processing"
    assert sorted(p["name"] for p in response.json()["packages"]) == sorted(p.name for p in topology.packages[:2])


@pytest.mark.parametrize("body, field", [
    ({"raw_packages": [], "destination_location": "cologne:processing"}, "raw_packages"),
    ({"raw_packages": ["no-such.tar"], "destination_location": "cologne:processing"}, "raw_packages"),
    ({"raw_packages": ["PKG"], "destination_location": "cologne:buffer"}, "destination_location"),
    ({"raw_packages": ["PKG"], "destination_location": "mars:processing"}, "destination_location"),
    ({"raw_packages": ["PKG"], "destination_location": "cologne:processing", "lifetime_days": 10_000},
     "lifetime_days"),
    ({"raw_packages": ["PKG"], "destination_location": "cologne:processing", "lifetime_days": "x"},
     "lifetime_days"),
    ({"raw_packages": "PKG", "destination_location": "cologne:processing"}, "raw_packages"),
    ({"destination_location": "cologne:processing"}, "raw_packages"),
])
def test_create_bad_input_is_400_with_field_errors(api, topology, body, field):
    body = {k: ([topology.packages[0].name] if v == ["PKG"] else v) for k, v in body.items()}

    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert StagingJob.objects.count() == 0


def test_create_not_archived_is_400(api, topology):
    loose = f.RawDataPackageFactory(name="loose.tar")

    response = api.post(URL, {"raw_packages": [loose.name], "destination_location": "cologne:processing"},
                        format="json")

    assert response.status_code == 400
    assert "loose.tar" in response.json()["raw_packages"][0]


def test_list_only_own_jobs(api, topology, alice, bob):
    mine = make_job(alice, topology)
    make_job(bob, topology)

    response = api.get(URL)

    assert response.status_code == 200
    assert [j["id"] for j in response.json()["results"]] == [mine.pk]


def test_list_operator_sees_all(topology, alice, bob, operator_user):
    jobs = [make_job(alice, topology), make_job(bob, topology)]
    client = APIClient()
    client.force_authenticate(operator_user)

    response = client.get(URL)

    assert sorted(j["id"] for j in response.json()["results"]) == sorted(j.pk for j in jobs)


def test_list_filter_by_status(api, topology, alice):
    pending = make_job(alice, topology)
    cancelled = make_job(alice, topology)
    api.post(f"{URL}{cancelled.pk}/cancel/")

    response = api.get(URL, {"status": "PENDING"})

    assert [j["id"] for j in response.json()["results"]] == [pending.pk]


def test_list_query_count_constant_for_1_and_3_jobs(api, topology, alice, django_assert_max_num_queries):
    def fresh_user():  # a new request loads the user afresh (and its groups)
        api.force_authenticate(type(alice).objects.get(pk=alice.pk))

    # At most 6 (groups, count or not depending on the pagination class, jobs, items, and the
    # explanations of pending jobs: their sites, the sites' workers); the same for 1 and 3.
    make_job(alice, topology)
    fresh_user()
    with django_assert_max_num_queries(6) as one_queries:
        one = api.get(URL)
    make_job(alice, topology)
    make_job(alice, topology)
    fresh_user()
    with django_assert_max_num_queries(6) as three_queries:
        three = api.get(URL)

    assert (len(one.json()["results"]), len(three.json()["results"])) == (1, 3)
    assert len(three_queries.captured_queries) == len(one_queries.captured_queries)


def test_detail_others_job_is_404(api, topology, bob):
    job = make_job(bob, topology)

    assert api.get(f"{URL}{job.pk}/").status_code == 404


def test_cancel_own_pending_job_is_200(api, topology, alice):
    job = make_job(alice, topology)

    response = api.post(f"{URL}{job.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"


def test_cancel_active_job_is_409(api, topology, alice):
    job = make_job(alice, topology)
    job_claim(job=job, worker="w")

    response = api.post(f"{URL}{job.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["status"] == "ACTIVE"
    assert "right now" in response.json()["detail"]


def test_cancel_cancelled_job_is_409(api, topology, alice):
    job = make_job(alice, topology)
    api.post(f"{URL}{job.pk}/cancel/")

    response = api.post(f"{URL}{job.pk}/cancel/")

    assert response.status_code == 409
    assert response.json() == {"detail": "This request is already cancelled.", "status": "CANCELLED"}


def test_cancel_others_job_is_404(api, topology, bob):
    job = make_job(bob, topology)

    response = api.post(f"{URL}{job.pk}/cancel/")

    job.refresh_from_db()
    assert response.status_code == 404
    assert job.status == JobStatus.PENDING


def test_token_auth_works(topology, alice):
    _, token = api_token_create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = client.post(URL, {"raw_packages": [topology.packages[0].name],
                                 "destination_location": "cologne:processing"}, format="json")

    assert response.status_code == 201


def test_session_auth_requires_csrf(topology, alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(URL, {"raw_packages": [topology.packages[0].name],
                                 "destination_location": "cologne:processing"}, format="json")

    assert response.status_code == 403
    assert StagingJob.objects.count() == 0


def test_anonymous_is_401(topology):
    response = APIClient().get(URL)

    assert response.status_code == 401


def test_worker_reads_but_cannot_create_or_cancel(topology, alice):
    job = make_job(alice, topology)
    client = APIClient()
    client.force_authenticate(f.worker_user())

    listed = client.get(URL)
    created = client.post(URL, {"raw_packages": [topology.packages[0].name],
                                "destination_location": "cologne:processing"}, format="json")
    cancelled = client.post(f"{URL}{job.pk}/cancel/")

    assert [j["id"] for j in listed.json()["results"]] == [job.pk]
    assert (created.status_code, cancelled.status_code) == (403, 403)
@pytest.mark.parametrize("body, field", [
    ({"lifetime_days": 10**30}, "lifetime_days"),
    ({"lifetime_days": -(10**30)}, "lifetime_days"),
    ({"destination_location": 10**30}, "destination_location"),
    ({"destination_location": str(10**30)}, "destination_location"),
    ({"raw_packages": [str(10**30)]}, "raw_packages"),
    ({"destination_location": None}, "destination_location"),
    ({"destination_location": ["x"]}, "destination_location"),
])
def test_create_absurd_values_are_400(api, topology, body, field):
    data = {"raw_packages": [topology.packages[0].name], "destination_location": "cologne:processing", **body}

    response = api.post(URL, data, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_detail_absurd_id_is_404(api, topology):
    assert api.get(f"{URL}{10**30}/").status_code == 404
    assert api.post(f"{URL}{10**30}/cancel/").status_code == 404


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(
    st.sampled_from(["raw_packages", "destination_location", "lifetime_days", "note"]), json_values, max_size=4,
))
def test_create_any_json_is_201_or_400(api, topology, body):
    response = api.post(URL, body, format="json")

    assert response.status_code in (201, 400)


def test_openapi_schema_documents_staging_jobs_without_warnings(tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yml"

    call_command("spectacular", "--fail-on-warn", "--file", str(target))

    schema = target.read_text()
    assert "/api/v1/staging-jobs/{id}/cancel/" in schema
    assert "StagingJobCreate" in schema


def test_listed_and_read_packages_are_what_the_package_serializer_says(api, topology, alice):
    job = make_job(alice, topology)
    first, *rest = job.items.order_by("raw_package_id")
    type(first).objects.filter(pk=first.pk).update(state=StagedPackageState.STAGED, bytes_staged=first.raw_package.size,
                                                   staged_at=timezone.now(), error="")
    type(first).objects.filter(pk=rest[-1].pk).update(state=StagedPackageState.FAILED, error="disk full")
    items = job.items.select_related("raw_package", "source_location__site").order_by("raw_package_id")
    expected = json.loads(JSONRenderer().render(StagingJobPackageSerializer(items, many=True).data))

    listed = api.get(URL).json()["results"][0]
    read = api.get(f"{URL}{job.pk}/").json()

    assert listed["packages"] == read["packages"] == expected
    assert listed["progress"] == {"packages_total": len(expected), "packages_done": 1,
                                  "bytes_total": sum(p["size"] for p in expected), "bytes_done": expected[0]["size"]}
