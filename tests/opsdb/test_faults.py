"""Database faults seen by a real server process: a refused connection is a 503 in JSON with
Retry-After (the reference worker retries those), and the development server does not keep a
database connection per thread until PostgreSQL runs out of them."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.management.utils import get_random_secret_key
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(database_url: str, *, gunicorn: bool = False, **env: str):
    """``manage.py runserver`` (or gunicorn) in a process of its own; yields its base URL once it answers."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    command = ([str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "opsdb.wsgi"]
               if gunicorn else
               # runserver checks migrations at start: it needs a database that answers.
               [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"])
    process = subprocess.Popen(
        command, cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**clean, "DATABASE_URL": database_url, "SECRET_KEY": get_random_secret_key(), "DEBUG": "0",
             "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0", **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(base + "/accounts/login/", timeout=30)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"runserver stopped: {process.stderr.read()}")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory):
    # Nothing listens on this port: every connection attempt is refused at once.
    database_url = f"postgres://opsdb@127.0.0.1:{free_port()}/opsdb?connect_timeout=2"
    static_root = str(tmp_path_factory.mktemp("static"))  # gunicorn refuses to start without collected files
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=BASE_DIR, capture_output=True,
        text=True, timeout=300, env={**os.environ, "DEBUG": "0", "SECRET_KEY": get_random_secret_key(),
                                     "ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": static_root,
                                     "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "opsdb.settings"})
    assert collected.returncode == 0, collected.stderr
    with server(database_url, gunicorn=True, STATIC_ROOT=static_root) as base:
        yield base


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/api/v1/sites/", None),
    ("post", "/api/v1/work/claim/", {"worker": "w1"}),
    ("post", "/api/v1/ingest/raw-packages/", {"name": "raw-1.tar"}),
])
def test_api_with_database_refusing_is_503_json_with_retry_after(refusing_server, method, path, body):
    response = requests.request(method, refusing_server + path, json=body,
                                headers={"Authorization": "Token 0123456789abcdef"}, timeout=30)

    assert response.status_code == 503, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Retry-After"]) > 0
    assert "database" in response.json()["detail"]


def test_page_with_database_refusing_is_503_with_retry_after(refusing_server):
    response = requests.get(refusing_server + "/data/", cookies={"sessionid": "x" * 32}, timeout=30,
                            allow_redirects=False)

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


def test_health_with_database_refusing_is_503(refusing_server):
    assert requests.get(refusing_server + "/health/", timeout=30).status_code == 503


@pytest.mark.postgres
@pytest.mark.django_db
def test_runserver_keeps_no_database_connection_per_client_thread(tmp_path):
    settings = connection.settings_dict
    url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    count = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()")

    static_root = str(tmp_path / "static")  # start-up refuses uncollected static files under DEBUG=0
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=BASE_DIR, capture_output=True,
        text=True, timeout=300, env={**os.environ, "DEBUG": "0", "SECRET_KEY": get_random_secret_key(),
                                     "ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": static_root,
                                     "DJANGO_SETTINGS_MODULE": "opsdb.settings"})
    assert collected.returncode == 0, collected.stderr
    with server(url, DB_CONN_MAX_AGE="60", STATIC_ROOT=static_root) as base:
        clients = [requests.Session() for _ in range(12)]  # keep-alive clients: a server thread each
        for client in clients:
            assert client.get(base + "/health/", timeout=30).status_code == 200
        time.sleep(0.5)
        with connection.cursor() as cursor:
            cursor.execute(count)
            held = cursor.fetchone()[0]
        for client in clients:
            client.close()

    assert held <= 1
