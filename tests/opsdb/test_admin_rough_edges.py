"""What got in a new operator's way in the admin: warnings shown as warnings, errors visible and
filterable, filters that say what they filter, sizes with units, signing out."""

import pytest
from django.contrib import admin
from django.urls import reverse

from opsdb.choices import JobStatus
from opsdb.services import job_claim, job_fail
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from transfers.forms import format_size, parse_size
from transfers.models import DataTransfer, DataTransferRoute

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


def failed(job, error="bbcp: connection reset by peer", times=1):
    for _ in range(times):
        job = job_claim(job=job, worker="ccat-dtn-1")
        job, _ = job_fail(job=job, lease_token=job.lease_token, error=error)
    return job


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def test_requires_intervention_is_a_warning_not_a_green_tick(operator_client):
    job = failed(f.LongTermArchiveTransferFactory(), times=3)
    change = reverse("admin:staging_longtermarchivetransfer_change", args=[job.pk])

    listing = operator_client.get(changelist(LongTermArchiveTransfer)).content.decode()
    page = operator_client.get(change).content.decode()

    for content in (listing, page):
        assert "⚠ needs an operator" in content
        assert "icon-yes.svg" not in content


def test_job_list_shows_the_last_error_shortened_and_filters_by_it(operator_client):
    long_error = "bbcp: connection reset by peer " + "x" * 200
    reset = failed(f.DataTransferFactory(), error=long_error)
    failed(f.DataTransferFactory(), error="permission denied")
    for _ in range(2):
        failed(f.DataTransferFactory(), error="permission denied", times=5)  # FAILED: offered as choices
    failed(f.DataTransferFactory(), error=long_error, times=5)

    listing = operator_client.get(changelist(DataTransfer))
    filtered = operator_client.get(changelist(DataTransfer), {"last_error": long_error})

    content = listing.content.decode()
    assert f'title="{long_error}"' in content
    assert long_error[:79] + "…" in content
    choices = [c["display"] for spec in listing.context["cl"].filter_specs
               if spec.title == "last error (open jobs)" for c in spec.choices(listing.context["cl"])]
    assert choices[1:] == ["permission denied (2)", long_error[:59] + "… (1)"]
    assert sorted(j.pk for j in filtered.context["cl"].result_list) == sorted(
        DataTransfer.objects.filter(last_error=long_error).values_list("pk", flat=True))
    assert reset.pk in [j.pk for j in filtered.context["cl"].result_list]


def filter_titles_and_choices(client, model) -> dict[str, list[str]]:
    response = client.get(changelist(model))
    cl = response.context["cl"]
    return {spec.title: [c["display"] for c in spec.choices(cl)] for spec in cl.filter_specs}


def test_archive_status_filter_offers_only_states_archive_transfers_take(operator_client):
    f.LongTermArchiveTransferFactory()

    filters = filter_titles_and_choices(operator_client, LongTermArchiveTransfer)

    assert filters["status"] == ["All", "Pending", "Active", "Completed", "Failed", "Cancelled"]


def test_data_transfer_filters_have_distinct_headings(operator_client):
    f.DataTransferUnpackFactory()
    f.DataTransferUnpackFactory()

    filters = filter_titles_and_choices(operator_client, DataTransfer)

    titles = list(filters)
    assert len(titles) == len(set(titles))
    assert {"status", "unpack status", "origin site", "destination site", "origin location",
            "destination location"} <= set(titles)
    assert filters["unpack status"] == ["All", "Pending", "Active", "Unpacked", "Failed", "Cancelled"]
    assert admin.site._registry[DataTransfer].get_list_filter(None)  # the status links of Needs attention still work


def test_status_links_of_needs_attention_still_filter(operator_client):
    job = failed(f.LongTermArchiveTransferFactory(), times=3)
    f.LongTermArchiveTransferFactory()

    response = operator_client.get(changelist(LongTermArchiveTransfer),
                                   {"status__exact": JobStatus.FAILED, "requires_intervention__exact": 1})

    assert [j.pk for j in response.context["cl"].result_list] == [job.pk]


@pytest.mark.parametrize(("text", "size"), [("10 TB", 10 * 10**12), ("500GB", 500 * 10**9), ("1.5 tb", 15 * 10**11),
                                            ("400000", 400000), ("2 TiB", 2 * 2**40)])
def test_sizes_parse_with_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("size", "text"), [(10 * 10**12, "10 TB"), (15 * 10**11, "1.5 TB"), (400000, "400 KB"),
                                            (123, "123 B")])
def test_sizes_show_with_units(size, text):
    assert format_size(size) == text


def route_form(route, **changes):
    data = {
        "origin_site": route.origin_site_id, "destination_site": route.destination_site_id,
        "route_type": route.route_type, "method": route.method, "active": "on", "max_concurrent": 4,
        "allow_relay_fallback": "on", "bundle_max_wait": "",
        **{f"{prefix}-{key}": 0 for prefix in ("django_fsm_log-statelog-content_type-object_id",
                                               "opsdb-datatransferlog-content_type-object_id")
           for key in ("TOTAL_FORMS", "INITIAL_FORMS")},
    }
    data.update(changes)
    return data


def test_route_bundle_size_is_typed_and_shown_with_units(operator_client):
    route = f.RouteFactory()
    url = reverse("admin:transfers_datatransferroute_change", args=[route.pk])

    saved = operator_client.post(url, route_form(route, bundle_target_size="12 TB"))
    page = operator_client.get(url).content.decode()
    refused = operator_client.post(url, route_form(route, bundle_target_size="twelve"))

    assert saved.status_code == 302
    assert DataTransferRoute.objects.get(pk=route.pk).bundle_target_size == 12 * 10**12
    assert 'value="12 TB"' in page
    assert refused.context["adminform"].form.errors["bundle_target_size"] == [
        "Give a size such as 10 TB, 500 GB or 400000 (bytes)."]


def test_route_max_concurrent_zero_is_refused_in_the_admin(operator_client):
    route = f.RouteFactory()
    url = reverse("admin:transfers_datatransferroute_change", args=[route.pk])

    response = operator_client.post(url, route_form(route, max_concurrent=0))

    assert response.context["adminform"].form.errors["max_concurrent"] == [
        "At least 1; to stop a route, pause it (with a reason)."]


def test_admin_log_out_lands_on_the_admin_sign_in_with_a_message(operator_client):
    response = operator_client.post(reverse("admin:logout"), follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:login")
    assert "You are signed out." in response.content.decode()
    assert "_auth_user_id" not in operator_client.session


def test_logout_opened_directly_offers_a_button_then_signs_out_with_a_message(client):
    client.force_login(f.scientist())

    page = client.get(reverse("logout"))
    response = client.post(reverse("logout"), follow=True)

    assert page.status_code == 200
    assert b'<button type="submit" class="primary">Sign out</button>' in page.content
    assert response.redirect_chain[-1][0] == reverse("login")
    assert "You are signed out." in response.content.decode()


def test_retry_keeps_the_total_of_attempts_visible(operator_client):
    from opsdb.services import job_complete, job_retry

    job = failed(f.DataTransferFactory(), times=5)
    job = job_retry(job=job, by=f.operator("bob"))
    job = job_claim(job=job, worker="ccat-dtn-1")
    job, _ = job_complete(job=job, lease_token=job.lease_token)

    listing = operator_client.get(changelist(DataTransfer)).content.decode()

    assert (job.attempts, job.attempts_total) == (0, 5)
    assert "0 <small>(5 in all)</small>" in listing
    attempts = list(job.logs.order_by("created_at", "pk").values_list("attempt", flat=True))
    assert attempts == [1, 2, 3, 4, 5, 6]  # the success after the retry is attempt 6, not "attempt 0"
