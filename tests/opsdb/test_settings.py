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
              "DJANGO_SETTINGS_MODULE": "opsdb.settings",
              "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "mail.example.org"}


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory) -> str:
    """A STATIC_ROOT filled by a real ``collectstatic`` under the production settings."""
    static_root = tmp_path_factory.mktemp("static")
    result = manage("collectstatic", "--no-input", "-v0", STATIC_ROOT=str(static_root),
                    OPSDB_VAR_DIR=str(static_root.parent), **PRODUCTION)
    assert result.returncode == 0, result.stderr[-500:]
    return str(static_root)


def test_check_deploy_passes_without_warnings_in_production_mode(collected_static):
    result = manage("check", "--deploy", "--fail-level", "WARNING", STATIC_ROOT=collected_static, **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr


def test_check_deploy_with_postgres_url_passes(collected_static):
    env = {**PRODUCTION, "DATABASE_URL": "postgres://opsdb:secret@db.example.org:5432/opsdb",
           "STATIC_ROOT": collected_static}

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("env, message", [
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
    ({"EMAIL_BACKEND": ""}, "EMAIL_BACKEND must be set when DEBUG is off"),
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"JOB_MAX_ATTEMPTS": "three"}, "JOB_MAX_ATTEMPTS='three' is not an integer"),
    ({"JOB_MAX_ATTEMPTS": "0"}, "JOB_MAX_ATTEMPTS=0 must be at least 1"),
    ({"JOB_BACKOFF_JITTER": "lots"}, "JOB_BACKOFF_JITTER='lots' is not a number"),
], ids=["no-secret-key", "no-email-backend", "bad-bool", "bad-int", "int-too-small", "bad-float"])
def test_bad_environment_fails_loudly(env, message):
    result = manage("check", **{**PRODUCTION, **env})

    assert result.returncode != 0
    assert message in result.stderr


def test_check_deploy_without_collected_static_files_fails(tmp_path):
    result = manage("check", "--deploy", STATIC_ROOT=str(tmp_path / "static"), **PRODUCTION)

    assert result.returncode != 0
    assert "(opsdb.E101) The static files have not been collected" in result.stderr
    assert "collectstatic" in result.stderr


def test_wsgi_start_without_collected_static_files_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    result = subprocess.run(
        [sys.executable, "-c", "import opsdb.wsgi"], cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
        env={**env, **PRODUCTION, "STATIC_ROOT": str(tmp_path / "static"), "OPSDB_VAR_DIR": str(tmp_path)},
    )

    assert result.returncode != 0
    assert "The static files have not been collected" in result.stderr


def test_wsgi_starts_once_static_files_are_collected(collected_static, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    result = subprocess.run(
        [sys.executable, "-c", "import opsdb.wsgi"], cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
        env={**env, **PRODUCTION, "STATIC_ROOT": collected_static, "OPSDB_VAR_DIR": str(tmp_path)},
    )

    assert result.returncode == 0, result.stderr[-500:]


def test_makemigrations_check_is_clean():
    result = manage("makemigrations", "--check", "--dry-run", DEBUG="1")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_migrate_on_a_fresh_clone_creates_the_var_folder(tmp_path):
    var_dir = tmp_path / "var"

    result = manage("migrate", "--no-input", "-v0", DEBUG="1", OPSDB_VAR_DIR=str(var_dir))

    assert result.returncode == 0, result.stderr[-500:]
    assert (var_dir / "opsdb.sqlite3").is_file()


@pytest.mark.parametrize("jit, options", [(None, "-c jit=off"), ("0", "-c jit=off"), ("1", None)],
                         ids=["default", "off", "on"])
def test_postgres_connections_compile_plans_just_in_time_only_when_asked(jit, options):
    env = {k: v for k, v in os.environ.items() if k != "DB_JIT"}
    env.update({"DEBUG": "1", "DATABASE_URL": "postgres://opsdb@db.example.org:5432/opsdb",
                "DJANGO_SETTINGS_MODULE": "opsdb.settings", **({"DB_JIT": jit} if jit else {})})
    code = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'].get('options'))"

    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == str(options)
