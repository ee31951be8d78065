"""Bad input anywhere in the API is a 4xx in JSON, never a 500 or an HTML page: digits other than
ASCII 0-9, JSON nested too deep, unknown URLs, and errors nobody expected (under DEBUG=0)."""

import pytest
from django.test import Client

from opsdb.api import views as api_views
from opsdb.models import RawDataPackage
from tests import factories as f
from tests.apiclient import operator_client, worker_client

pytestmark = pytest.mark.django_db

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def arabic(number: int) -> str:
    return str(number).translate(ARABIC_INDIC)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100_000, 5_000, 200])
@pytest.mark.parametrize("url", ["/api/v1/work/claim/", "/api/v1/ingest/raw-packages/", "/api/v1/sites/"])
def test_deeply_nested_json_is_400(url, depth):
    body = '{"worker": ' + nested(depth) + ', "name": ' + nested(depth) + "}"

    response = operator_client().post(url, body, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"


def test_json_nested_as_deep_as_a_real_request_is_accepted():
    f.SiteFactory(name="ccat")

    response = worker_client().post("/api/v1/work/claim/", {"worker": "w", "sites": ["ccat"]}, format="json")

    assert response.status_code == 204


def test_detail_with_arabic_indic_id_is_404_not_another_record():
    site = f.SiteFactory()

    response = operator_client().get(f"/api/v1/sites/{arabic(site.pk)}/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("value", ["²", "١", "𝟙"])
def test_id_filter_with_non_ascii_digits_is_400(value):
    f.RawDataPackageCopyFactory()

    response = operator_client().get("/api/v1/raw-packages/", {"site_id": value})

    assert response.status_code == 400
    assert "site_id" in response.json()


def test_ingest_location_id_in_arabic_indic_digits_is_400():
    location = f.DataLocationFactory()
    body = {"name": "raw-1.tar", "size": 1, "checksum": "ab", "location_id": arabic(location.pk),
            "observation": {"obs_id": "o", "instrument": "I", "target_name": "t",
                            "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-01T01:00:00Z"},
            "files": []}

    response = worker_client().post("/api/v1/ingest/raw-packages/", body, format="json")

    assert response.status_code == 400
    assert "location_id" in response.json()
    assert not RawDataPackage.objects.exists()


def test_location_write_with_arabic_indic_site_is_400():
    site = f.SiteFactory()

    response = operator_client().post("/api/v1/locations/", {
        "site": arabic(site.pk), "name": "buffer", "location_type": "BUFFER", "storage_type": "DISK",
        "base_path": "/data/buffer"}, format="json")

    assert response.status_code == 400
    assert "site" in response.json()


@pytest.mark.parametrize("url", ["/api/v1/no-such-thing/", "/api/v1/sites/999999/", "/api/v1/work/nope/1/log/"])
def test_api_not_found_is_json(url):
    response = operator_client().get(url)

    assert response.status_code in (404, 405)
    assert response["Content-Type"] == "application/json"


def test_api_unexpected_error_is_a_json_500_without_details(monkeypatch, settings):
    settings.DEBUG = False

    def broken(self, request, *args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api_views.SiteViewSet, "list", broken)
    client = operator_client()
    client.raise_request_exception = False

    response = client.get("/api/v1/sites/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert "secret detail" not in response.content.decode()
    assert response.json()["detail"]


def test_page_not_found_outside_the_api_stays_html():
    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
