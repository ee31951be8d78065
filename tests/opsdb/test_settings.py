"""Production settings: ``check --deploy`` is clean with the usual env vars, bad values fail loudly,
and the models match their migrations. Each runs manage.py in a fresh process, as production does."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env={**clean, **env}, capture_output=True, text=True,
        timeout=120,
    )


PRODUCTION = {"SECRET_KEY": get_random_secret_key(), "ALLOWED_HOSTS": "opsdb.example.org", "DEBUG": "0",
              "DJANGO_SETTINGS_MODULE": "opsdb.settings"}


def test_check_deploy_passes_without_warnings_in_production_mode():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr


def test_check_deploy_with_postgres_url_passes():
    env = {**PRODUCTION, "DATABASE_URL": "postgres://opsdb:secret@db.example.org:5432/opsdb"}

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("env, message", [
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"JOB_MAX_ATTEMPTS": "three"}, "JOB_MAX_ATTEMPTS='three' is not an integer"),
    ({"JOB_MAX_ATTEMPTS": "0"}, "JOB_MAX_ATTEMPTS=0 must be at least 1"),
    ({"JOB_BACKOFF_JITTER": "lots"}, "JOB_BACKOFF_JITTER='lots' is not a number"),
], ids=["no-secret-key", "bad-bool", "bad-int", "int-too-small", "bad-float"])
def test_bad_environment_fails_loudly(env, message):
    result = manage("check", **{**PRODUCTION, **env})

    assert result.returncode != 0
    assert message in result.stderr


def test_makemigrations_check_is_clean():
    result = manage("makemigrations", "--check", "--dry-run", DEBUG="1")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_migrate_on_a_fresh_clone_creates_the_var_folder(tmp_path):
    var_dir = tmp_path / "var"

    result = manage("migrate", "--no-input", "-v0", DEBUG="1", OPSDB_VAR_DIR=str(var_dir))

    assert result.returncode == 0, result.stderr[-500:]
    assert (var_dir / "opsdb.sqlite3").is_file()
