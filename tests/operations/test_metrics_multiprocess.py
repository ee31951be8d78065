"""/metrics under gunicorn with several worker processes: the request counts of every process add up."""

import os
import subprocess
import sys

import pytest
import requests
from django.core.management.utils import get_random_secret_key
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from tests.opsdb.test_faults import BASE_DIR, server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REQUESTS = 40


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def test_request_counts_add_up_across_gunicorn_workers(tmp_path):
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    static_root = str(tmp_path / "static")
    env = {"DEBUG": "0", "SECRET_KEY": get_random_secret_key(), "STATIC_ROOT": static_root,
           "DJANGO_SETTINGS_MODULE": "opsdb.settings", "DATABASE_URL": database_url()}
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=BASE_DIR,
                               capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert collected.returncode == 0, collected.stderr

    with server(database_url(), gunicorn=True, STATIC_ROOT=static_root, PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                GUNICORN_CMD_ARGS="--workers 3") as base:
        for _ in range(REQUESTS):
            assert requests.get(base + "/health/", timeout=30, headers={"Connection": "close"}).status_code == 200
        scraped = requests.get(base + "/metrics", timeout=30)

    assert scraped.status_code == 200
    samples = [s for family in text_string_to_metric_families(scraped.text) for s in family.samples
               if s.name == "opsdb_http_requests_total" and s.labels["view"] == "health"]
    assert sum(s.value for s in samples) == REQUESTS
    writers = {path.name.rsplit("_", 1)[-1] for path in multiproc.glob("counter_*.db")}
    assert len(writers) >= 2  # more than one process answered, and the scrape read them all
