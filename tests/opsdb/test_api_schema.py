"""The OpenAPI schema validates, its docs are served without a CDN, and a fuzz run over it finds no 5xx."""

import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from opsdb.tokens import api_token_create
from opsdb.wsgi import application
from tests import factories as f
from tests.apiclient import ensure_role_groups, operator_client, worker

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)


def test_schema_validates_without_warnings():
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null"],
        cwd=ROOT, capture_output=True, text=True, env={"DEBUG": "1", "PATH": "/usr/bin:/bin"}, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr


def test_schema_documents_the_work_endpoints():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    claim = schema["paths"]["/api/v1/work/claim/"]["post"]
    complete = schema["paths"]["/api/v1/work/{kind}/{id}/complete/"]["post"]
    claim_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ClaimRequest"}}}
    assert claim["requestBody"]["content"] == claim_body
    assert set(claim["responses"]) >= {"200", "204", "400", "401", "403"}
    assert set(complete["responses"]) >= {"200", "400", "404", "409"}
    results = schema["components"]["schemas"]["WorkResultRequest"]["oneOf"]
    assert {"$ref": "#/components/schemas/TransferCompleteRequest"} in results


def test_schema_needs_authentication():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/schema/").status_code == 401
    assert operator_client().get("/api/v1/schema/").status_code == 200


def test_swagger_ui_is_served_from_the_app_not_a_cdn():
    response = operator_client().get("/api/v1/docs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


# The fuzz run: schemathesis generates requests from the schema and sends them to the WSGI app,
# authenticated as a worker (work, ingest and reads), a scientist (catalogue, staging requests) and
# an operator (writes, retries, cancels), a few examples per operation each to stay quick.
SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
SCHEMA.app = application


@pytest.fixture(params=["worker", "scientist", "operator"])
def fuzz_data(request):
    """Something for every endpoint to find: a job of each kind, a route, a log line."""
    f.LongTermArchiveTransferFactory()
    f.DataTransferUnpackFactory(transfer=f.DataTransferFactory(route=f.RouteFactory()))
    f.DataTransferLogFactory()
    f.RawDataFileCopyFactory()
    f.StagingJobPackageFactory()
    # Requests go straight to the WSGI app: keep it from closing the test's connection after each
    # one, as Django's own test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    ensure_role_groups()
    user = {"worker": lambda: worker("fuzzer"), "scientist": lambda: f.scientist("fuzz-scientist"),
            "operator": lambda: f.operator("fuzz-operator")}[request.param]()
    yield api_token_create(user=user)[1]
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@SCHEMA.parametrize()
@hypothesis_settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_fuzz_finds_no_server_error(case, fuzz_data):
    response = case.call(headers={"Authorization": f"Token {fuzz_data}"})

    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])
