"""Suite-wide fixtures and the rules for tests that need PostgreSQL or a browser.

``make test`` runs the suite twice: on SQLite, then on PostgreSQL when TEST_DATABASE_URL is
reachable. Tests marked ``postgres`` run only in the second pass; tests marked ``browser`` need
Debian's chromium. With OPSDB_REQUIRE_BROWSER=1 (CI) a missing browser is an error, not a skip.
"""

import os
import shutil

import pytest
from django.db import connection

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    on_postgres = "postgres" in os.environ.get("DATABASE_URL", "")
    require_browser = os.environ.get("OPSDB_REQUIRE_BROWSER") == "1"
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(
                reason="needs PostgreSQL: runs in the PostgreSQL pass of `make test` (set TEST_DATABASE_URL)"
            ))
        if "browser" in item.keywords and not CHROMIUM and not require_browser:
            item.add_marker(pytest.mark.skip(reason="needs a browser: `apt-get install chromium` to run it"))


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM:
        pytest.fail("OPSDB_REQUIRE_BROWSER=1 but no chromium found: apt-get install chromium")
    return CHROMIUM


@pytest.fixture
def role_groups(db) -> None:
    """The role groups: a transactional test's flush removes what the data migration created."""
    from django.apps import apps

    from opsdb.roles import sync_role_groups

    sync_role_groups(apps)


@pytest.fixture(autouse=True)
def fresh_token_cache():
    """Each test starts with an empty token cache (a rolled-back test sends no signal to empty it)."""
    from opsdb.tokens import invalidate_token_cache

    invalidate_token_cache()
