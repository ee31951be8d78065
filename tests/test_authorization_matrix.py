"""Who may call what: every role × every endpoint × every method, enumerated from the URL conf.

A new URL makes this test fail until its row is added to ``POLICY``, so no endpoint ships without
a decision about who may call it. "Allowed" means the request got past authentication and
permissions (any answer but 401/403, or for pages a redirect to the login page); "denied" means
it did not. Each request runs in a savepoint that is rolled back, so all see the same data.
The Django admin is checked at its index only: its own permission checks cover its pages.
"""

import re

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from custody.models import DeletionJob
from staging.models import FixityCheck
from tests import factories as f
from tests.apiclient import ensure_role_groups, token_client, worker

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "scientist", "worker", "operator")
READ = ("GET",)
WRITE = ("POST", "PUT", "PATCH", "DELETE")
EVERYONE = set(ROLES)
SIGNED_IN = {"scientist", "worker", "operator"}

CATALOGUE = ["site", "datalocation", "instrument", "observation", "rawdatapackage", "rawdatafile",
             "rawdatapackagecopy", "rawdatafilecopy"]
OPERATIONS = ["datatransferroute", "datatransferpackage", "datatransferpackagecopy", "datatransfer",
              "datatransferunpack", "datatransferlog", "longtermarchivetransfer", "fixitycheck", "deletionjob"]
WRITABLE = ["site", "datalocation", "datatransferroute"]
JOBS = ["datatransferpackage", "datatransfer", "datatransferunpack", "longtermarchivetransfer", "fixitycheck",
        "deletionjob"]


def _policy() -> dict[str, dict[str, set[str]]]:
    """URL name → method → the roles allowed."""
    policy: dict[str, dict[str, set[str]]] = {}
    for model in CATALOGUE + OPERATIONS:
        readers = {"worker", "operator"} | ({"scientist"} if model in CATALOGUE else set())
        for suffix in ("list", "detail"):
            policy[f"{model}-{suffix}"] = {"GET": readers}
    for model in WRITABLE:
        policy[f"{model}-list"]["POST"] = {"operator"}
        policy[f"{model}-detail"].update({method: {"operator"} for method in ("PUT", "PATCH", "DELETE")})
    for model in JOBS:
        policy[f"{model}-cancel"] = {"POST": {"operator"}}
        policy[f"{model}-retry"] = {"POST": {"operator"}}
    policy["rawdatapackage-custody"] = {"GET": policy["rawdatapackage-detail"]["GET"]}  # like the package itself
    policy["datatransferroute-pause"] = {"POST": {"operator"}}
    policy["datatransferroute-resume"] = {"POST": {"operator"}}
    policy.update({
        "stagingjob-list": {"GET": SIGNED_IN, "POST": {"scientist", "operator"}},
        "stagingjob-detail": {"GET": SIGNED_IN},
        "stagingjob-cancel": {"POST": {"scientist", "operator"}},
        "ingest-raw-package": {"POST": {"worker", "operator"}},
        **{f"work-{action}": {"POST": {"worker", "operator"}}
           for action in ("claim", "heartbeat", "complete", "fail", "log", "partials", "report")},
        "api-schema": {"GET": SIGNED_IN},
        "api-docs": {"GET": SIGNED_IN},
        "health": {"GET": EVERYONE, "POST": EVERYONE},
        "login": {"GET": EVERYONE, "POST": EVERYONE, "PUT": EVERYONE},
        "logout": {"GET": EVERYONE, "POST": EVERYONE},
        "admin-logout": {"GET": EVERYONE, "POST": EVERYONE},
        "home": {method: {"scientist", "operator"} for method in READ + WRITE},
        "find": {"GET": {"scientist", "operator"}, "POST": {"scientist", "operator"}},
        "selection": {"POST": {"scientist", "operator"}},
        "request-list": {"GET": {"scientist", "operator"}, "POST": {"scientist", "operator"}},
        "request-new": {"GET": {"scientist", "operator"}, "POST": {"scientist", "operator"}},
        "request-detail": {"GET": {"scientist", "operator"}, "POST": {"scientist", "operator"}},
        "request-cancel": {"POST": {"scientist", "operator"}},
        "request-extend": {"POST": {"scientist", "operator"}},
        "request-release": {"POST": {"scientist", "operator"}},
        "admin:index": {"GET": {"operator"}},
        "dashboard": {"GET": {"operator"}},  # the operations dashboard at /ops/
        # The test client calls from 127.0.0.1: loopback may scrape; other addresses need the bearer
        # token (tests/operations/test_metrics.py).
        "metrics": {"GET": EVERYONE},
    })
    return policy


POLICY = _policy()


def url_patterns(patterns=None, prefix: str = ""):
    """(route, name, pattern) of every URL but the admin's and DRF's format-suffix twins."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if not route.startswith("admin/"):
                yield from url_patterns(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and "(?P<format>" not in route:
            yield route, pattern.name, pattern
    yield "admin/", "admin:index", None


def methods_of(pattern: URLPattern | None) -> list[str]:
    """The methods the view answers (a viewset's actions, an APIView's handlers); GET and POST for pages."""
    if pattern is None:
        return ["GET"]
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(method.upper() for method in actions if method not in ("head", "options"))
    view_class = getattr(callback, "view_class", None) or getattr(getattr(callback, "cls", None), "__name__", None)
    if isinstance(view_class, type):
        return sorted(m.upper() for m in view_class.http_method_names
                      if hasattr(view_class, m) and m not in ("options", "head"))
    return ["GET", "POST"]  # a function view: a method it does not serve answers 405


@pytest.fixture
def world():
    """One record of everything, so detail URLs reach their permission checks with a real id."""
    ensure_role_groups()
    archive_job = f.LongTermArchiveTransferFactory()
    return {
        "site": archive_job.source_location.site.pk, "datalocation": archive_job.source_location.pk,
        "instrument": f.InstrumentFactory().pk, "observation": f.ObservationFactory().pk,
        "rawdatapackage": archive_job.raw_package.pk, "rawdatafile": f.RawDataFileFactory().pk,
        "rawdatapackagecopy": f.RawDataPackageCopyFactory().pk, "rawdatafilecopy": f.RawDataFileCopyFactory().pk,
        "datatransferroute": f.RouteFactory().pk, "datatransferpackage": f.DataTransferPackageFactory().pk,
        "datatransferpackagecopy": f.DataTransferPackageCopyFactory().pk,
        "datatransfer": f.DataTransferFactory().pk, "datatransferunpack": f.DataTransferUnpackFactory().pk,
        "datatransferlog": f.DataTransferLogFactory().pk, "longtermarchivetransfer": archive_job.pk,
        "stagingjob": f.StagingJobPackageFactory().job.pk, "archive-job": archive_job.pk,
        "deletionjob": DeletionJob.objects.create(location=archive_job.source_location).pk,
        "fixitycheck": FixityCheck.objects.create(copy=f.RawDataPackageCopyFactory(), size=1,
                                                  location=f.DataLocationFactory()).pk,
    }


def concrete(route: str, name: str, world: dict) -> str:
    """The route with real values: the record's id for ``pk``, the archive kind for work URLs."""
    model = name.rsplit("-", 1)[0]
    pk = world.get(model) or world.get("stagingjob" if name.startswith("request-") else "archive-job")
    path = route.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<pk>[^)]*\)|<(int|id):pk>", str(pk), path)
    return "/" + path.replace("<str:kind>", "archive")


def client_for(role: str):
    """(page client factory, API client) of ``role``; a fresh page client each time (logout ends a session)."""
    if role == "anonymous":
        return Client, APIClient()
    user = {"scientist": f.scientist, "worker": lambda: worker("matrix-worker"), "operator": f.operator}[role]()

    def page_client():
        client = Client()
        client.force_login(user)
        return client

    return page_client, token_client(user)


def denied(path: str, response) -> bool:
    if response.status_code in (401, 403):
        return True
    if path in ("/accounts/logout/", "/admin/logout/"):  # logging out leads to a login page for everyone
        return False
    return not path.startswith("/api/") and response.status_code == 302 and (
        "/accounts/login/" in response["Location"] or "/admin/login/" in response["Location"])


def test_every_url_has_a_row_in_the_policy():
    missing = sorted({name for _, name, _ in url_patterns()} - POLICY.keys())

    assert missing == [], f"new endpoints: decide who may call them in POLICY: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(role, world):
    page_client, api_client = client_for(role)
    pages = page_client()
    wrong = []
    for route, name, pattern in url_patterns():
        path = "/admin/" if pattern is None else concrete(route, name, world)
        client = api_client if path.startswith("/api/") else page_client() if "logout" in name else pages
        for method in methods_of(pattern):
            allowed = role in POLICY.get(name, {}).get(method, set())
            sid = transaction.savepoint()
            try:
                response = getattr(client, method.lower())(path, {} if method != "GET" else None,
                                                           **({"format": "json"} if client is api_client else {}))
            finally:
                transaction.savepoint_rollback(sid)
            if response.status_code == 405:  # the view does not serve this method at all
                continue
            if method not in POLICY.get(name, {}):
                wrong.append(f"{method} {path} ({name}): {response.status_code}, no decision in POLICY")
            elif denied(path, response) == allowed:
                wrong.append(f"{method} {path} ({name}): {response.status_code}, expected "
                             f"{'allowed' if allowed else 'denied'}")

    assert wrong == [], "\n".join(wrong)
