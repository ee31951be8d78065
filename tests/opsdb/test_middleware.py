"""The pages' middleware is skipped by workers' token requests to the work API, and only by those."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from operations.metrics import REQUESTS
from tests import factories as f
from tests.apiclient import ensure_role_groups, worker_client

pytestmark = pytest.mark.django_db

CLAIM = "/api/v1/work/claim/"


def requests_counted(view: str, status: str) -> float:
    return REQUESTS.labels("POST", view, status)._value.get()


def test_worker_token_request_to_work_api_skips_the_page_middleware():
    client = worker_client()
    counted = requests_counted("work-claim", "204")

    response = client.post(CLAIM, {"worker": "w1"}, format="json")

    assert response.status_code == 204
    assert "X-Frame-Options" not in response  # clickjacking middleware: a page header
    assert response.cookies == {}  # no session, no CSRF cookie
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs
    assert requests_counted("work-claim", "204") == counted + 1  # and the request metrics


def test_work_api_with_a_bad_token_is_401_without_the_page_middleware():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="token not-a-token")

    response = client.post(CLAIM, {"worker": "w1"}, format="json")

    assert response.status_code == 401
    assert "X-Frame-Options" not in response


def test_operator_session_request_to_work_api_goes_through_the_page_middleware():
    ensure_role_groups()
    client = Client()
    client.force_login(f.operator())

    response = client.post(CLAIM, {"worker": "w1"}, content_type="application/json")

    assert response.status_code == 204
    assert response["X-Frame-Options"] == "DENY"


def test_token_request_to_another_api_path_goes_through_the_page_middleware():
    response = worker_client().get("/api/v1/sites/")

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"


def test_work_api_without_a_trailing_slash_is_404_json_for_a_worker():
    response = worker_client().post(CLAIM.rstrip("/"), {"worker": "w1"}, format="json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("header", ["Token", "Token ", "token    ", "Token a b", "TOKEN \t", "Token é",
                                    "Token " + "x" * 5000, "Bearer abc", "Token\x00abc"])
def test_a_malformed_token_header_is_401_never_500(header):
    """With or without the bypass, a malformed ``Authorization`` header is refused by DRF, never a 500."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.post(CLAIM, {"worker": "w1"}, format="json")

    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"


def test_a_bad_token_with_an_operators_session_is_401_not_the_session():
    """The token header decides: a session cookie does not rescue a bad token (no fallback to the session)."""
    ensure_role_groups()
    client = APIClient()
    client.force_login(f.operator())
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")

    response = client.post(CLAIM, {"worker": "w1"}, format="json")

    assert response.status_code == 401
