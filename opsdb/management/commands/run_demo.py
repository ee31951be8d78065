"""``manage.py run_demo``: the demo in one command — web app, scheduler and one worker per site.

``make run`` calls it after ``migrate`` and ``load_demo``. It starts, as child processes:
- the development server on 127.0.0.1:8000,
- the scheduler loop (a tick every 2 s, small bundles, a few seconds of maximum wait),
- one reference worker per demo site that has a worker account (``worker-<site>``), with bbcp
  and rsync mapped to a local ``cp`` because the demo sites are folders on this machine.

To watch a route pause itself and come back: ``touch var/demo/link-down-ccat`` makes the ccat
worker's bbcp transfers fail (a retryable error, like a broken link); after a few failures the
route pauses and its transfers are held; ``rm var/demo/link-down-ccat`` and the next probe
transfer (after a short demo cool-down) resumes it. See docs/routes.md.
Ctrl-C or SIGTERM is forwarded to every child; the command waits for them and exits.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

HOST, PORT = "127.0.0.1", 8000
DEMO_SETTINGS = {
    "BUNDLE_TARGET_SIZE_BYTES": "400000",  # demo packages are 10–300 kB: a few per bundle
    "BUNDLE_MAX_WAIT_SECONDS": "5",
    "JOB_BACKOFF_BASE_SECONDS": "2",
    "JOB_BACKOFF_MAX_SECONDS": "30",
    "JOB_MAX_ATTEMPTS": "10",  # so a demo link outage pauses the route before transfers run out of attempts
    "ROUTE_PAUSE_AFTER_FAILURES": "3",
    "ROUTE_COOLDOWN_SECONDS": "30",
    # A frozen worker (kill -STOP) shows as a stalled site on /ops/ and in Needs attention within a minute.
    "WORKER_SILENT_SECONDS": "30",
    "API_TOKEN_LAST_USED_SECONDS": "10",
    "STUCK_PENDING_SECONDS": "300",
}
# The demo's bbcp: a local copy, unless the site's "link down" switch file exists (then it fails,
# as a broken link would). The script gets the switch, source and destination as $0, $1, $2.
LINK_COMMAND = (
    "sh -c 'if [ -e \"$0\" ]; then echo \"link down (demo switch $0 exists)\" >&2; exit 1; fi; "
    "exec cp \"$1\" \"$2\"' {switch} {{source}} {{destination}}"
)


def link_switch(site: str) -> Path:
    """The file that, while it exists, makes the demo worker of ``site`` fail its bbcp transfers."""
    return Path(settings.VAR_DIR) / "demo" / f"link-down-{site}"


def link_command(site: str) -> str:
    return LINK_COMMAND.format(switch=shlex.quote(str(link_switch(site))))
STOP_TIMEOUT = 15.0
RUN_TOKEN_NAME = "run_demo"


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path | None = None  # None: output goes to this terminal
    process: subprocess.Popen | None = field(default=None, repr=False)


def worker_program() -> list[str]:
    """The ``opsdb-worker`` entry point of this environment (the package's console script)."""
    script = Path(sys.executable).with_name("opsdb-worker")
    if script.exists():
        return [str(script)]
    found = shutil.which("opsdb-worker")
    return [found] if found else [sys.executable, "-c", "from worker.cli import main; main()"]


def worker_tokens() -> dict[str, str]:
    """{site: API token} for every demo worker account ``worker-<site>``.

    Tokens are stored only as digests, so each run makes its own (named ``run_demo``) for the
    workers it starts, and revokes the ones the previous run made.
    """
    from opsdb.models import ApiToken, Site
    from opsdb.tokens import api_token_create, api_token_revoke

    sites = set(Site.objects.values_list("name", flat=True))
    tokens = {}
    for user in User.objects.filter(username__startswith="worker-", is_active=True).order_by("username"):
        site = user.username.removeprefix("worker-")
        if site in sites:
            for old in ApiToken.objects.active().filter(user=user, name=RUN_TOKEN_NAME):
                api_token_revoke(token=old)
            tokens[site] = api_token_create(user=user, name=RUN_TOKEN_NAME)[1]
    return tokens


def demo_children(tokens: dict[str, str], log_dir: Path, *, interval: float = 2.0, port: int = PORT) -> list[Child]:
    """The processes of the demo: server, scheduler, and a worker per site."""
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    children = [
        Child("server", [*manage, "runserver", f"{HOST}:{port}", "--noreload"], log_dir / "server.log"),
        Child("scheduler", [*manage, "run_scheduler", "--interval", str(interval)]),
    ]
    for site, token in sorted(tokens.items()):
        children.append(Child(f"{site}-worker", [
            *worker_program(), "--api-url", f"http://{HOST}:{port}", "--token", token,
            "--name", f"{site}-worker", "--sites", site,
            "--method-command", f"bbcp={link_command(site)}",
            "--method-command", "rsync=cp {source} {destination}",
            "--log-dir", str(log_dir / site), "--poll-interval", "2", "--grace-seconds", "5",
            "--state-dir", str(log_dir.parent / "worker-state" / site),
        ], log_dir / f"{site}-worker.log"))
    return children


class Command(BaseCommand):
    help = "Run the demo: development server on 127.0.0.1:8000, the scheduler, and one worker per demo site."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0, help="Scheduler tick in seconds (default 2).")
        parser.add_argument("--port", type=int, default=PORT, help=f"Port of the web app (default {PORT}).")

    def handle(self, *args, interval: float, port: int = PORT, **options):
        tokens = worker_tokens()
        if not tokens:
            raise CommandError("No demo worker accounts (worker-<site>): run `manage.py load_demo` first.")
        if _port_in_use(port):
            raise CommandError(f"{HOST}:{port} is already in use: is the demo running in another terminal?")
        log_dir = Path(settings.VAR_DIR) / "demo" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        children = demo_children(tokens, log_dir, interval=interval, port=port)
        stopping = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.append(True))
        try:
            self._start(children[:1])
            _wait_for_port(port, timeout=20)
            self._start(children[1:])
            self._banner(tokens, log_dir, port)
            self._watch(children, stopping)
        finally:
            _stop(children)
        self.stdout.write("Demo stopped.")

    def _start(self, children: list[Child]) -> None:
        env = {**os.environ, **{k: os.environ.get(k, v) for k, v in DEMO_SETTINGS.items()}, "PYTHONUNBUFFERED": "1"}
        for child in children:
            out = open(child.log, "ab") if child.log else None  # noqa: SIM115  (the child owns it)
            child.process = subprocess.Popen(child.argv, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                             cwd=settings.BASE_DIR)

    def _banner(self, tokens: dict[str, str], log_dir: Path, port: int) -> None:
        self.stdout.write(self.style.SUCCESS(f"ops-db demo running at http://{HOST}:{port}/"))
        self.stdout.write(f"  operators:  http://{HOST}:{port}/admin/  (user 'operator')")
        self.stdout.write(f"  scientists: http://{HOST}:{port}/        (user 'scientist')")
        self.stdout.write("  passwords were printed by load_demo when the accounts were created; "
                          "reset one with `manage.py changepassword operator`")
        self.stdout.write(f"  workers: {', '.join(f'{s}-worker' for s in sorted(tokens))}; "
                          f"server and worker logs in {log_dir}")
        switch = link_switch("ccat")
        self.stdout.write(f"  route health: `touch {switch}` breaks ccat's outgoing link, `rm` it to mend "
                          "(docs/routes.md)")
        self.stdout.write("  scheduler lines follow; Ctrl-C stops everything.")

    def _watch(self, children: list[Child], stopping: list[bool]) -> None:
        while not stopping:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    log = f" (see {child.log})" if child.log else ""
                    raise CommandError(f"{child.name} exited with status {code}{log}; stopping the demo.")
            time.sleep(0.5)


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_in_use(port):
            return
        time.sleep(0.2)
    raise CommandError(f"the development server did not start on {HOST}:{port} within {timeout:.0f} s")


def _stop(children: list[Child]) -> None:
    """SIGTERM every running child, wait for them, and kill what is left after the timeout."""
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
