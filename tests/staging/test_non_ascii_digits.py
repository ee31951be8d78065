"""Digits other than ASCII 0-9 ("²", "١") in ids are refused as bad input: never a 500, never another id.

``str.isdigit()`` is true for "²" (which ``int()`` refuses) and ``int()`` reads "١" (Arabic-Indic one) as 1.
"""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from staging.models import StagingJob

pytestmark = pytest.mark.django_db

URL = "/api/v1/staging-jobs/"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def arabic(number: int) -> str:
    return str(number).translate(ARABIC_INDIC)


@pytest.fixture
def api(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.parametrize("field", ["raw_packages", "destination_location"])
@pytest.mark.parametrize("digits", ["²", "¹²", "١", "𝟙"])
def test_api_create_with_non_ascii_digits_is_400(api, topology, field, digits):
    body = {"raw_packages": [topology.packages[0].name], "destination_location": "cologne:processing"}
    body[field] = [digits] if field == "raw_packages" else digits

    response = api.post(URL, body, format="json")

    assert response.status_code == 400, response.content[:300]
    assert field in response.json()
    assert not StagingJob.objects.exists()


def test_api_create_does_not_read_arabic_indic_digits_as_an_id(api, topology):
    package, processing = topology.packages[0], topology.cologne_processing

    by_location = api.post(URL, {"raw_packages": [package.name], "destination_location": arabic(processing.pk)},
                           format="json")
    by_package = api.post(URL, {"raw_packages": [arabic(package.pk)], "destination_location": processing.pk},
                          format="json")

    assert (by_location.status_code, by_package.status_code) == (400, 400)
    assert not StagingJob.objects.exists()


@pytest.mark.parametrize("value", ["²", "١", "𝟙"])
def test_find_with_non_ascii_digit_instrument_is_a_form_error(client_alice, topology, value):
    response = client_alice.get(reverse("staging:find"), {"instrument": value})

    assert response.status_code == 200
    assert "instrument" in response.context["form"].errors


@pytest.mark.parametrize("value", ["²", "١"])
def test_request_form_with_non_ascii_digit_location_is_a_form_error(client_alice, topology, value):
    client_alice.post(reverse("staging:selection"), {"action": "add", "package": [topology.packages[0].pk]})

    response = client_alice.post(reverse("staging:request-new"), {"destination_location": value, "step": "confirm",
                                                                  "lifetime_days": "", "note": ""})

    assert response.status_code == 200
    assert "destination_location" in response.context["form"].errors
    assert not StagingJob.objects.exists()


def test_request_form_does_not_read_arabic_indic_lifetime(client_alice, topology):
    client_alice.post(reverse("staging:selection"), {"action": "add", "package": [topology.packages[0].pk]})

    response = client_alice.post(reverse("staging:request-new"), {
        "destination_location": topology.cologne_processing.pk, "step": "confirm", "lifetime_days": "٣", "note": ""})

    assert response.status_code == 200
    assert "lifetime_days" in response.context["form"].errors
    assert not StagingJob.objects.exists()


@pytest.mark.parametrize("query", ["instrument=²", "instrument=١"])
def test_add_all_results_with_non_ascii_digit_query_changes_nothing(client_alice, topology, query):
    response = client_alice.post(reverse("staging:selection"), {"action": "all", "query": query})

    assert response.status_code == 302
    assert client_alice.session.get("staging_selection", []) == []


@pytest.mark.parametrize("field", ["observation", "package"])
def test_selection_with_non_ascii_digit_ids_adds_nothing(client_alice, topology, field):
    package = topology.packages[0]
    value = arabic(package.observation_id if field == "observation" else package.pk)

    response = client_alice.post(reverse("staging:selection"), {"action": "add", field: value})

    assert response.status_code == 302
    assert client_alice.session.get("staging_selection", []) == []
