"""Raw packages waiting at a buffer for more data to fill a bundle say so: how much of the target
waits there and when the bundle is sealed at the latest; in the API, the admin and the command."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from opsdb.explain import attach_raw_package_explanations, explain_raw_packages
from opsdb.explanation import ExplanationCode, clock
from opsdb.models import RawDataPackage
from tests import factories as f
from tests import topology as t
from tests.apiclient import operator_client
from transfers.planning import plan_bundles

pytestmark = pytest.mark.django_db

TB = 10**12


@pytest.fixture
def ccat_to_cologne():
    ccat, cologne = t.site("ccat"), t.site("cologne")
    t.direct(ccat, cologne, bundle_target_size=10 * TB, bundle_max_wait=timedelta(hours=6))
    return ccat


def test_a_package_waiting_for_its_bundle_says_how_full_it_is_and_until_when(ccat_to_cologne):
    now = timezone.now()
    first = t.waiting(ccat_to_cologne.buffer, size=int(1.5 * TB), age=timedelta(hours=2), now=now)
    second = t.waiting(ccat_to_cologne.buffer, size=int(0.6 * TB), age=timedelta(minutes=5), now=now)
    arrived = second.copies.get().created_at

    found = explain_raw_packages([first, second], now=now)

    assert found[second.pk].code == ExplanationCode.BUNDLE_FILLING
    assert found[second.pk].message == (
        f"Waiting at ccat:buffer for more data to fill a bundle (2.1 TB of 10.0 TB waiting there): its bundle is "
        f"sealed when 10.0 TB are waiting, or at {clock(now + timedelta(hours=4), now)} at the latest."
    )
    assert found[second.pk].since == arrived


def test_a_full_or_aged_pool_is_sealed_at_the_next_pass(ccat_to_cologne):
    now = timezone.now()
    aged = t.waiting(ccat_to_cologne.buffer, size=TB, age=timedelta(hours=7), now=now)

    assert explain_raw_packages([aged], now=now)[aged.pk].message.endswith(
        "the scheduler's next bundling pass seals its bundle.")


def test_a_bundled_package_waits_for_no_bundle(ccat_to_cologne, django_assert_num_queries):
    now = timezone.now()
    t.waiting(ccat_to_cologne.buffer, size=11 * TB, now=now)
    plan_bundles(now=now)
    bundled = list(RawDataPackage.objects.all())

    with django_assert_num_queries(0):
        assert explain_raw_packages(bundled, now=now) == {}


def test_a_package_at_no_bundling_point_has_no_explanation():
    package = f.RawDataPackageCopyFactory().raw_package

    assert explain_raw_packages([package]) == {}


def test_a_page_of_packages_costs_four_queries_for_1_or_3(ccat_to_cologne, django_assert_num_queries):
    one = [t.waiting(ccat_to_cologne.buffer, size=TB)]
    three = one + [t.waiting(ccat_to_cologne.buffer, size=TB) for _ in range(2)]

    # locations, routes, where the packages wait, what waits at those buffers
    with django_assert_num_queries(4):
        attach_raw_package_explanations(one)
    with django_assert_num_queries(4):
        attach_raw_package_explanations(three)

    assert [p.explanation.code for p in three] == [ExplanationCode.BUNDLE_FILLING] * 3


def test_api_and_admin_and_command_show_it(ccat_to_cologne, client):
    package = t.waiting(ccat_to_cologne.buffer, size=TB)
    elsewhere = f.RawDataPackageFactory()
    api = operator_client()
    client.force_login(f.operator("olga"))

    listed = {p["id"]: p["explanation"] for p in api.get("/api/v1/raw-packages/").json()["results"]}
    detail = api.get(f"/api/v1/raw-packages/{package.pk}/").json()["explanation"]
    admin_page = client.get(reverse("admin:opsdb_rawdatapackage_changelist")).content.decode()
    out = StringIO()
    call_command("explain", "raw", package.name, stdout=out)

    assert listed[elsewhere.pk] is None
    assert listed[package.pk] == detail
    assert detail["code"] == "bundle_filling"
    assert 'data-code="bundle_filling"' in admin_page
    assert "Why: Waiting at ccat:buffer for more data to fill a bundle (1.0 TB of 10.0 TB" in out.getvalue()
