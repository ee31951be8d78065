"""Configuration of the reference worker: flags, environment variables, and which wins."""

import os

import pytest

from worker import cli
from worker.jobs import KINDS, render_command


def config(argv, monkeypatch, **env):
    for key in [k for k in os.environ if k.startswith("OPSDB_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cli.config_from(cli.build_parser().parse_args(argv))


def test_config_from_environment(monkeypatch):
    cfg = config([], monkeypatch, OPSDB_API_URL="http://ops:8000", OPSDB_TOKEN="abc", OPSDB_WORKER_NAME="dtn-1",
                 OPSDB_WORKER_SITES="cologne,cornell", OPSDB_WORKER_CONCURRENCY="3",
                 OPSDB_WORKER_COMMAND_BBCP="cp {source} {destination}")

    assert (cfg.api_url, cfg.token, cfg.name, cfg.sites, cfg.concurrency) == ("http://ops:8000", "abc", "dtn-1",
                                                                           ["cologne", "cornell"], 3)
    assert cfg.kinds == list(KINDS)
    assert cfg.commands == {"bbcp": "cp {source} {destination}"}
    assert "bbcp" in cfg.methods and "copy" in cfg.methods
    assert "s3" not in cfg.methods  # only on purpose: --methods s3 or an s3 command


def test_flags_win_over_environment(monkeypatch):
    cfg = config(["--token", "flag", "--concurrency", "2", "--kinds", "transfer,unpack", "--methods", "bbcp",
                  "--method-command", "bbcp=bbcp -f {source} {host}:{destination}", "--once"],
                 monkeypatch, OPSDB_API_URL="http://ops", OPSDB_TOKEN="env", OPSDB_WORKER_CONCURRENCY="9",
                 OPSDB_WORKER_COMMAND_BBCP="cp {source} {destination}")

    assert (cfg.token, cfg.concurrency, cfg.kinds, cfg.methods, cfg.once) == ("flag", 2, ["transfer", "unpack"],
                                                                              ["bbcp"], True)
    assert cfg.commands["bbcp"] == "bbcp -f {source} {host}:{destination}"


@pytest.mark.parametrize("argv, message", [
    ([], "--api-url"),
    (["--api-url", "http://x"], "--token"),
    (["--api-url", "http://x", "--token", "t", "--kinds", "package,teleport"], "teleport"),
    (["--api-url", "http://x", "--token", "t", "--methods", "ftp"], "ftp"),
    (["--api-url", "http://x", "--token", "t", "--concurrency", "0"], "--concurrency"),
])
def test_config_bad_values_refused(monkeypatch, argv, message):
    with pytest.raises(cli.ConfigError, match=message):
        config(argv, monkeypatch)


def test_method_command_needs_known_method(monkeypatch):
    with pytest.raises(SystemExit):
        config(["--method-command", "ftp=put {source}"], monkeypatch)


def test_render_command_fills_words_without_a_shell():
    argv = render_command("bbcp -f {source} {host}:{destination}",
                          {"source": "/data/a b.tar", "host": "dtn", "destination": "/in/a b.tar"})

    assert argv == ["bbcp", "-f", "/data/a b.tar", "dtn:/in/a b.tar"]


def test_startup_line_names_the_essentials(monkeypatch):
    cfg = config(["--api-url", "http://ops", "--token", "t", "--name", "w1", "--sites", "ccat"], monkeypatch)

    line = cli.startup_line(cfg)

    assert line.startswith("opsdb-worker w1: api http://ops, sites ccat, kinds package,transfer,unpack,archive,stage")


def test_worker_imports_nothing_of_django():
    import subprocess
    import sys

    code = ("import sys, worker.cli, worker.runner, worker.jobs, worker.storage, worker.client; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'opsdb', "
            "'transfers', 'staging')))")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)

    assert out.stdout.strip() == "[]"
