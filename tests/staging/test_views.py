"""The scientists' pages: access, search, selection, request form (every refusal), lists, privacy, CSRF."""

from datetime import datetime, time, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsdb.choices import JobStatus
from opsdb.services import job_claim
from staging.models import StagingJob
from staging.selection import SESSION_KEY
from staging.services import staging_job_create
from staging.views import CappedPaginator
from tests import factories as f
from tests.staging.conftest import archived_package

pytestmark = pytest.mark.django_db

FIND = reverse("staging:find")
SELECT = reverse("staging:selection")
NEW = reverse("staging:request-new")
LIST = reverse("staging:request-list")


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


def select(client, packages):
    return client.post(SELECT, {"action": "add", "package": [p.pk for p in packages]})


def make_job(owner, topology, packages=None):
    return staging_job_create(owner=owner, raw_packages=packages or topology.packages,
                              destination_location=topology.cologne_processing)


# Access


@pytest.mark.parametrize("url", [FIND, NEW, LIST, "/"])
def test_pages_anonymous_redirected_to_login(client, url):
    response = client.get(url, follow=False)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("url", [FIND, NEW, LIST])
def test_pages_worker_forbidden(client, url):
    client.force_login(f.worker_user())

    assert client.get(url).status_code == 403


def test_home_leads_to_find_data(client_alice):
    response = client_alice.get("/", follow=True)

    assert response.redirect_chain[-1][0] == FIND
    assert b"Find data" in response.content


def test_login_page_and_sign_in(client, alice):
    page = client.get(reverse("login"))
    response = client.post(reverse("login"), {"username": "alice", "password": "correct-horse-battery"})

    assert page.status_code == 200
    assert b"Sign in" in page.content
    assert response.status_code == 302
    assert client.get(FIND).status_code == 200


def test_logout_is_a_post_form(client_alice):
    page = client_alice.get(FIND)
    response = client_alice.post(reverse("logout"))

    assert b'action="/accounts/logout/"' in page.content
    assert response.status_code == 302
    assert client_alice.get(FIND).status_code == 302


# Search


def test_find_filters_by_target_instrument_dates_and_name(client_alice, topology):
    cam = f.InstrumentFactory(name="Prime-Cam")
    obs = f.ObservationFactory(instrument=cam, target_name="NGC 1333",
                               start_time=timezone.now() - timedelta(days=30))
    wanted = archived_package(topology.cologne_archive, observation=obs, name="ngc-scan.tar")
    day = obs.start_time.date()

    responses = [
        client_alice.get(FIND, {"target": "ngc"}),
        client_alice.get(FIND, {"instrument": cam.pk}),
        client_alice.get(FIND, {"date_from": day, "date_to": day}),
        client_alice.get(FIND, {"package": "NGC-SC"}),
    ]

    for response in responses:
        assert [p.name for p in response.context["page"]] == [wanted.name]


def test_find_names_match_from_their_start(client_alice, topology):
    obs = f.ObservationFactory(target_name="Orion KL")
    wanted = archived_package(topology.cologne_archive, observation=obs, name="ngc-scan.tar")

    by_start = client_alice.get(FIND, {"package": "  ngc-sc ", "target": "orion k"})
    inside = [client_alice.get(FIND, {"package": "scan"}), client_alice.get(FIND, {"target": "KL"})]

    assert [p.name for p in by_start.context["page"]] == [wanted.name]
    assert [response.context["total"] for response in inside] == [0, 0]


def test_find_dates_are_whole_days_of_the_start_time(client_alice, topology):
    day = timezone.now().date() - timedelta(days=3)
    midnight = timezone.make_aware(datetime.combine(day, time.min))
    first, last, after = (f.ObservationFactory(start_time=midnight + delta)
                          for delta in (timedelta(0), timedelta(hours=23, minutes=59), timedelta(days=1)))
    names = [archived_package(topology.cologne_archive, observation=o).name for o in (first, last, after)]

    response = client_alice.get(FIND, {"date_from": day, "date_to": day})
    until_the_end = client_alice.get(FIND, {"date_from": day, "date_to": "9999-12-31"})

    assert sorted(p.name for p in response.context["page"]) == sorted(names[:2])
    assert set(names) <= {p.name for p in until_the_end.context["page"]}


def test_find_counts_up_to_the_cap_and_says_more(client_alice, topology, monkeypatch):
    monkeypatch.setattr(CappedPaginator, "cap", 2)

    capped = client_alice.get(FIND, {"target": "orion"})  # the topology's 3 packages
    exact = client_alice.get(FIND, {"package": topology.packages[0].name})

    assert (capped.context["more"], capped.context["page"].paginator.num_pages) == (True, 1)
    assert b"More than <strong>2</strong> packages found" in capped.content
    assert b"Add all" not in capped.content  # how many there are is not known
    assert (exact.context["more"], exact.context["total"]) == (False, 1)
    assert b"<strong>1</strong> package found" in exact.content


def test_find_shows_size_and_archive(client_alice, topology):
    response = client_alice.get(FIND, {"package": topology.packages[0].name})

    assert b"5.0 GB" in response.content
    assert b"cologne:archive" in response.content


def test_find_bad_date_range_is_explained(client_alice, topology):
    response = client_alice.get(FIND, {"date_from": "2026-02-01", "date_to": "2026-01-01"})

    assert response.context["form"].errors == {"date_to": ["The end date must not be before the start date."]}
    assert response.context["total"] == 0


def test_find_paginates(client_alice, topology):
    for _ in range(26):
        archived_package(topology.cologne_archive, files=0)

    first = client_alice.get(FIND, {"target": "orion"})
    second = client_alice.get(FIND, {"target": "orion", "page": 2})

    assert len(first.context["page"]) == 25
    assert len(second.context["page"]) == 4


def test_find_query_count_constant_for_1_and_3_results(client_alice, topology, django_assert_num_queries):
    for count in (1, 3):
        names = [p.name for p in topology.packages[:count]]
        with django_assert_num_queries(7) as captured:
            response = client_alice.get(FIND, {"package": "raw-"} if count == 3 else {"package": names[0]})
        assert len(response.context["page"]) == count, captured


# Selection


def test_selection_add_packages_kept_across_searches(client_alice, topology):
    select(client_alice, topology.packages[:2])
    client_alice.get(FIND, {"target": "nothing-like-this"})

    assert client_alice.session[SESSION_KEY] == [p.pk for p in topology.packages[:2]]


def test_selection_whole_observation(client_alice, topology):
    obs = f.ObservationFactory()
    packages = [archived_package(topology.cologne_archive, observation=obs) for _ in range(2)]

    client_alice.post(SELECT, {"observation": obs.pk})

    assert sorted(client_alice.session[SESSION_KEY]) == sorted(p.pk for p in packages)


def test_selection_all_results_of_a_search(client_alice, topology):
    other = archived_package(topology.cologne_archive, observation=f.ObservationFactory(target_name="M82"))

    client_alice.post(SELECT, {"action": "all", "query": "target=orion"})

    assert sorted(client_alice.session[SESSION_KEY]) == sorted(p.pk for p in topology.packages)
    assert other.pk not in client_alice.session[SESSION_KEY]


def test_selection_all_results_past_bound_is_refused(client_alice, topology, settings):
    settings.STAGING_SELECTION_MAX = 2

    response = client_alice.post(SELECT, {"action": "all", "query": "target=orion"}, follow=True)

    assert SESSION_KEY not in client_alice.session or client_alice.session[SESSION_KEY] == []
    assert str(list(response.context["messages"])[0]).startswith(
        "This search has more than the 2 results a request can hold."
    )


def test_selection_remove_and_clear(client_alice, topology):
    select(client_alice, topology.packages)

    client_alice.post(SELECT, {"action": "remove", "package": [topology.packages[0].pk]})
    after_remove = list(client_alice.session[SESSION_KEY])
    client_alice.post(SELECT, {"action": "clear"})

    assert after_remove == [p.pk for p in topology.packages[1:]]
    assert client_alice.session[SESSION_KEY] == []


def test_selection_redirects_only_to_own_site(client_alice, topology):
    response = client_alice.post(SELECT, {"action": "clear", "next": "https://evil.example.com/"})

    assert response.url == FIND


# Request form


def post_request(client, step="preview", **data):
    payload = {"destination_location": data.pop("destination", None), "lifetime_days": "", "note": "", "step": step}
    payload.update(data)
    return client.post(NEW, {k: v for k, v in payload.items() if v is not None})


def test_request_preview_shows_count_size_sources_and_reuse(client_alice, topology):
    reused = topology.packages[0]
    for raw_file in reused.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing)
    select(client_alice, topology.packages)

    response = post_request(client_alice, destination=topology.cologne_processing.pk)

    plan = response.context["plan"]
    assert (plan.count, plan.total_size) == (3, 15 * 10**9)
    assert [i.package for i in plan.reused] == [reused]
    assert [(s.location, s.count) for s in plan.sources] == [(topology.cologne_archive, 2)]
    assert b"already staged there and reused" in response.content
    assert b"Submit request" in response.content
    assert StagingJob.objects.count() == 0


def test_request_confirm_creates_job_and_clears_selection(client_alice, topology, alice):
    select(client_alice, topology.packages)

    response = post_request(client_alice, step="confirm", destination=topology.cologne_processing.pk,
                            lifetime_days="3", note="calibration")

    job = StagingJob.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("staging:request-detail", args=[job.pk])
    assert (job.owner, job.lifetime, job.note, job.items.count()) == (alice, timedelta(days=3), "calibration", 3)
    assert client_alice.session[SESSION_KEY] == []


def test_request_empty_selection_is_refused(client_alice, topology):
    response = post_request(client_alice, destination=topology.cologne_processing.pk)

    assert response.context["form"].non_field_errors() == ["Select at least one package to stage."]
    assert StagingJob.objects.count() == 0


def test_request_not_archived_is_refused(client_alice, topology):
    loose = f.RawDataPackageFactory(name="not-archived.tar")
    select(client_alice, [topology.packages[0], loose])

    response = post_request(client_alice, step="confirm", destination=topology.cologne_processing.pk)

    errors = response.context["form"].non_field_errors()
    assert "not-archived.tar" in errors[0] and "Not archived anywhere" in errors[0]
    assert StagingJob.objects.count() == 0


def test_request_non_processing_location_is_refused(client_alice, topology):
    select(client_alice, topology.packages)

    response = post_request(client_alice, step="confirm", destination=topology.cologne_archive.pk)

    assert response.context["form"].errors["destination_location"] == [
        "cologne:archive is a long-term archive location, not a processing area: choose a processing location."
    ]
    assert StagingJob.objects.count() == 0


def test_request_post_with_an_empty_body_is_refused_not_500(client_alice, topology):
    response = client_alice.post(NEW, {})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == ["Select at least one package to stage."]
    assert StagingJob.objects.count() == 0


def test_request_missing_location_is_refused(client_alice, topology):
    select(client_alice, topology.packages)

    response = post_request(client_alice)

    assert response.context["form"].errors["destination_location"] == ["Choose a processing location to stage to."]


def test_request_lifetime_past_maximum_is_refused(client_alice, topology, settings):
    settings.STAGING_MAX_LIFETIME_DAYS = 10
    select(client_alice, topology.packages)

    response = post_request(client_alice, step="confirm", destination=topology.cologne_processing.pk,
                            lifetime_days="11")

    assert response.context["form"].errors["lifetime_days"] == ["The lifetime can be at most 10 days."]
    assert StagingJob.objects.count() == 0


def test_request_lifetime_zero_is_refused(client_alice, topology):
    select(client_alice, topology.packages)

    response = post_request(client_alice, destination=topology.cologne_processing.pk, lifetime_days="0")

    assert response.context["form"].errors["lifetime_days"] == ["The lifetime must be at least one day."]


def test_request_form_offers_only_processing_locations(client_alice, topology):
    response = client_alice.get(NEW)

    assert b"cologne:processing" in response.content
    assert b"cornell:processing" in response.content
    assert b"cologne:buffer" not in response.content


# CSRF


@pytest.mark.parametrize("url, data", [
    (SELECT, {"action": "clear"}),
    (NEW, {"step": "preview"}),
    (reverse("logout"), {}),
])
def test_posts_without_csrf_token_are_refused(alice, url, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post(url, data).status_code == 403


def test_cancel_without_csrf_token_is_refused(alice, topology):
    job = make_job(alice, topology)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(reverse("staging:request-cancel", args=[job.pk]))

    job.refresh_from_db()
    assert response.status_code == 403
    assert job.status == JobStatus.PENDING


def test_cancel_with_csrf_token_from_page_works(alice, topology):
    job = make_job(alice, topology)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("staging:request-detail", args=[job.pk]))

    response = client.post(reverse("staging:request-cancel", args=[job.pk]),
                           {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})

    job.refresh_from_db()
    assert response.status_code == 302
    assert job.status == JobStatus.CANCELLED


# Requests: list, detail, privacy


def test_list_shows_only_own_requests(client_alice, topology, alice, bob):
    mine = make_job(alice, topology)
    make_job(bob, topology)

    response = client_alice.get(LIST)

    assert [j.pk for j in response.context["page"]] == [mine.pk]


def test_list_operator_sees_all(client, topology, alice, bob, operator_user):
    jobs = [make_job(alice, topology), make_job(bob, topology)]
    client.force_login(operator_user)

    response = client.get(LIST)

    assert sorted(j.pk for j in response.context["page"]) == sorted(j.pk for j in jobs)
    assert b"<th>Owner</th>" in response.content


def test_list_progress_counts_packages_and_bytes(client_alice, topology, alice):
    job = make_job(alice, topology)
    job.items.filter(raw_package=topology.packages[0]).update(state="STAGED")

    row = client_alice.get(LIST).context["page"][0]

    assert (row.packages_done, row.packages_total) == (1, 3)
    assert (row.size_done, row.size_total) == (5 * 10**9, 15 * 10**9)


def test_list_refreshes_only_while_under_way(client_alice, topology, alice):
    job = make_job(alice, topology)
    refreshing = client_alice.get(LIST)
    job.cancel()  # protected field: go through the transition, as the service does
    job.save()
    quiet = client_alice.get(LIST)

    assert b'data-refresh-seconds="5"' in refreshing.content  # updated in place, no meta refresh
    assert b'http-equiv="refresh"' not in refreshing.content
    assert b"data-refresh-seconds" not in quiet.content


def test_list_query_count_constant_for_1_and_3_requests(client_alice, topology, alice, django_assert_num_queries):
    # 5, and 2 for why the pending requests wait (their sites, the workers serving them)
    make_job(alice, topology)
    with django_assert_num_queries(7):
        one = client_alice.get(LIST)
    make_job(alice, topology)
    make_job(alice, topology)
    with django_assert_num_queries(7):
        three = client_alice.get(LIST)

    assert (len(one.context["page"]), len(three.context["page"])) == (1, 3)


@pytest.mark.parametrize("view", ["staging:request-detail", "staging:request-cancel"])
def test_someone_elses_request_is_404(client_alice, topology, bob, view):
    job = make_job(bob, topology)

    response = client_alice.post(reverse(view, args=[job.pk])) if view.endswith("cancel") else client_alice.get(
        reverse(view, args=[job.pk]))

    job.refresh_from_db()
    assert response.status_code == 404
    assert job.status == JobStatus.PENDING


def test_operator_can_open_and_cancel_anyones_request(client, topology, alice, operator_user):
    job = make_job(alice, topology)
    client.force_login(operator_user)

    page = client.get(reverse("staging:request-detail", args=[job.pk]))
    client.post(reverse("staging:request-cancel", args=[job.pk]))

    job.refresh_from_db()
    assert page.status_code == 200
    assert job.status == JobStatus.CANCELLED


def test_detail_cancel_active_request_is_refused_with_message(client_alice, topology, alice):
    job = make_job(alice, topology)
    job_claim(job=job, worker="w")

    response = client_alice.post(reverse("staging:request-cancel", args=[job.pk]), follow=True)

    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE
    assert "copying this request's data right now" in str(list(response.context["messages"])[0])


def test_detail_explains_errors_in_plain_words(client_alice, topology, alice, settings):
    from opsdb.services import job_fail

    settings.JOB_MAX_ATTEMPTS = 5
    job = make_job(alice, topology)
    job = job_claim(job=job, worker="w")
    job_fail(job=job, lease_token=job.lease_token, error="sha256 checksum mismatch on scan-00.fits")

    response = client_alice.get(reverse("staging:request-detail", args=[job.pk]))

    assert b"A file arrived damaged" in response.content
    assert b"<summary>Technical details</summary><pre>sha256 checksum mismatch on scan-00.fits" in response.content
    assert b"1 failed (at most 5 are tried)" in response.content


def test_detail_shows_absolute_paths_of_staged_files(client_alice, topology, alice):
    reused = topology.packages[0]
    for raw_file in reused.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing,
                                 path=f"staged/x/{raw_file.relative_path}")
    job = make_job(alice, topology, packages=[reused])

    response = client_alice.get(reverse("staging:request-detail", args=[job.pk]))

    base = topology.cologne_processing.base_path
    assert response.context["all_paths"] == [f"{base}/staged/x/scan-00.fits", f"{base}/staged/x/scan-01.fits"]
    assert b"data-copy-target" in response.content


def test_absurd_ids_are_harmless(client_alice, topology):
    huge = str(10**30)

    detail = client_alice.get(f"/requests/{huge}/")
    cancel = client_alice.post(f"/requests/{huge}/cancel/")
    client_alice.post(SELECT, {"action": "add", "package": [huge, "abc"]})
    client_alice.post(SELECT, {"observation": huge})
    search = client_alice.get(FIND, {"instrument": huge})

    assert (detail.status_code, cancel.status_code) == (404, 404)
    assert client_alice.session.get(SESSION_KEY, []) == []
    assert search.context["form"].errors == {
        "instrument": ["Select a valid choice. That choice is not one of the available choices."]
    }


def test_request_absurd_lifetime_is_refused(client_alice, topology):
    select(client_alice, topology.packages)

    response = post_request(client_alice, destination=topology.cologne_processing.pk, lifetime_days=str(10**30))

    assert response.context["form"].errors["lifetime_days"] == ["The lifetime can be at most 90 days."]


def test_request_absurd_location_id_is_refused(client_alice, topology):
    select(client_alice, topology.packages)

    response = post_request(client_alice, destination=str(10**30))

    assert response.context["form"].errors["destination_location"] == ["That location does not exist."]


def test_detail_query_count_constant_for_1_and_3_packages(client_alice, topology, alice, django_assert_num_queries):
    def staged(package):
        for raw_file in package.files.all():
            f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing)
        return package

    one = make_job(alice, topology, packages=[staged(topology.packages[0])])
    three = make_job(alice, topology, packages=[staged(p) for p in topology.packages[1:]] + [topology.packages[0]])
    counts = []
    for job in (one, three):
        with django_assert_num_queries(9, exact=False) as captured:
            response = client_alice.get(reverse("staging:request-detail", args=[job.pk]))
        counts.append(len(captured))
        assert len(response.context["all_paths"]) == 2 * job.items.count()

    assert counts[0] == counts[1]


def test_forbidden_page_explains_who_may_use_it(client):
    client.force_login(f.worker_user())

    response = client.get(FIND)

    assert response.status_code == 403
    assert b"Only scientists and operators can use these pages." in response.content


def test_detail_and_list_say_when_files_were_cleaned_up(client_alice, topology, alice):
    package = topology.packages[0]
    for raw_file in package.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing)
    job = make_job(alice, topology, packages=[package])  # all reused: READY at once
    StagingJob.objects.filter(pk=job.pk).update(cleaned_at=timezone.now())

    detail = client_alice.get(reverse("staging:request-detail", args=[job.pk]))
    listing = client_alice.get(LIST)

    assert job.status == JobStatus.READY
    assert b"Expired, files removed" in detail.content
    assert b"because the request's lifetime ended" in detail.content
    assert b"Expired, files removed" in listing.content
