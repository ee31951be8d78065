"""``manage.py run_demo``: which processes it starts, and with which worker accounts."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from opsdb.management.commands.run_demo import demo_children, link_command, link_switch, worker_tokens
from opsdb.models import ApiToken
from opsdb.tokens import api_token_create, cached_token
from tests import factories as f
from worker.jobs import JobContext, JobError, run_command

pytestmark = pytest.mark.django_db


def test_worker_tokens_for_each_site_with_a_worker_account():
    f.SiteFactory(name="ccat")
    f.SiteFactory(name="cologne")
    ccat = f.worker_user("worker-ccat")
    _, printed_by_load_demo = api_token_create(user=ccat, name="demo")
    f.worker_user("worker-cologne")
    f.worker_user("worker-nowhere")

    tokens = worker_tokens()

    assert sorted(tokens) == ["ccat", "cologne"]
    assert cached_token(tokens["ccat"]).user().username == "worker-ccat"
    assert cached_token(tokens["cologne"]).user().username == "worker-cologne"
    assert cached_token(printed_by_load_demo) is not None  # the token load_demo printed still works


def test_worker_tokens_of_the_previous_run_are_revoked():
    f.SiteFactory(name="ccat")
    f.worker_user("worker-ccat")
    first = worker_tokens()["ccat"]

    second = worker_tokens()["ccat"]

    assert cached_token(first) is None
    assert cached_token(second) is not None
    assert ApiToken.objects.active().filter(user__username="worker-ccat").count() == 1


def test_demo_children_server_scheduler_and_a_worker_per_site(tmp_path: Path):
    children = demo_children({"ccat": "tok-a", "cornell": "tok-b"}, tmp_path, interval=2.0)

    assert [c.name for c in children] == ["server", "scheduler", "ccat-worker", "cornell-worker"]
    assert children[0].argv[-2:] == ["127.0.0.1:8000", "--noreload"]
    assert children[1].argv[-3:] == ["run_scheduler", "--interval", "2.0"]
    worker = children[2].argv
    assert worker[worker.index("--token") + 1] == "tok-a"
    assert worker[worker.index("--sites") + 1] == "ccat"
    assert worker[worker.index("--name") + 1] == "ccat-worker"
    assert worker[worker.index("--api-url") + 1] == "http://127.0.0.1:8000"
    assert f"bbcp={link_command('ccat')}" in worker
    assert worker[worker.index("--log-dir") + 1] == str(tmp_path / "ccat")


def test_run_demo_without_demo_accounts_says_what_to_do():
    with pytest.raises(CommandError, match="load_demo"):
        call_command("run_demo")


def test_demo_link_switch_makes_the_bbcp_command_fail_retryably_until_removed(tmp_path: Path, settings):
    settings.VAR_DIR = tmp_path
    link_switch("ccat").parent.mkdir(parents=True)
    source, destination = tmp_path / "a.tar", tmp_path / "b.tar"
    source.write_bytes(b"data")
    values = {"source": str(source), "destination": str(destination)}
    ctx = JobContext(job={}, log_file=io.StringIO())
    link_switch("ccat").touch()

    with pytest.raises(JobError) as down:
        run_command(link_command("ccat"), values, ctx)
    link_switch("ccat").unlink()
    run_command(link_command("ccat"), values, ctx)

    assert down.value.retryable is True
    assert "link down (demo switch" in str(down.value)
    assert destination.read_bytes() == b"data"
