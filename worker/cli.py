"""`opsdb-worker`: command line and environment configuration of the reference worker.

Every option has an environment variable; a flag wins over the variable. Example (the demo maps
bbcp to a local copy)::

    opsdb-worker --api-url http://127.0.0.1:8000 --token $TOKEN --sites cologne \\
        --method-command bbcp='cp {source} {destination}' --concurrency 2
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from worker.client import ApiClient, RetryPolicy
from worker.jobs import KINDS
from worker.runner import Runner, WorkerConfig

METHODS = ("copy", "rsync", "bbcp", "s3")
# Methods claimed by default when their program is installed. Not s3: an upload to a bucket can only
# be verified with a --checksum-command, so s3 is claimed only when configured on purpose.
METHOD_PROGRAMS = {"rsync": "rsync", "bbcp": "bbcp"}


class ConfigError(Exception):
    """A bad option value; the message names the option."""


def csv_list(value: str, allowed: Sequence[str] | None = None, option: str = "") -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if allowed is not None and item not in allowed]
    if unknown:
        raise ConfigError(f"{option}: unknown value(s) {', '.join(unknown)} (choose from {', '.join(allowed or ())})")
    return items


def method_command(value: str) -> tuple[str, str]:
    """Parse ``method=template``."""
    method, sep, template = value.partition("=")
    method = method.strip()
    if not sep or method not in METHODS or not template.strip():
        raise argparse.ArgumentTypeError(
            f"expected METHOD=TEMPLATE with METHOD one of {', '.join(METHODS)}, got {value!r}")
    return method, template.strip()


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="opsdb-worker", description="Reference worker of ops-db: claims jobs over HTTP and moves files.",
        epilog="Command templates are split like a shell command line and each word is then filled with "
               "{source} {destination} {host} (destination host) {source_host} {destination_host} {name} "
               "{size} {checksum} {partial} {resume_bytes} {checkpoint_dir}; no shell is involved. For a "
               "destination on local disk {destination} is the job's partial file, kept between attempts.",
    )
    parser.add_argument("--api-url", default=env("OPSDB_API_URL"), help="ops-db base URL (OPSDB_API_URL)")
    parser.add_argument("--token", default=env("OPSDB_TOKEN"), help="worker API token (OPSDB_TOKEN)")
    parser.add_argument("--name", default=env("OPSDB_WORKER_NAME") or socket.gethostname(),
                        help="worker name reported to ops-db (OPSDB_WORKER_NAME; default: host name)")
    parser.add_argument("--sites", default=env("OPSDB_WORKER_SITES", ""),
                        help="comma-separated sites to work at (OPSDB_WORKER_SITES; default: any allowed)")
    parser.add_argument("--kinds", default=env("OPSDB_WORKER_KINDS", ",".join(KINDS)),
                        help=f"job kinds to claim (OPSDB_WORKER_KINDS; default: {','.join(KINDS)})")
    parser.add_argument("--methods", default=env("OPSDB_WORKER_METHODS"),
                        help="transfer methods to claim (OPSDB_WORKER_METHODS; default: copy plus every "
                             "method whose program is installed or whose command is configured)")
    parser.add_argument("--concurrency", type=int, default=env("OPSDB_WORKER_CONCURRENCY", "1"),
                        help="claim loops (threads) (OPSDB_WORKER_CONCURRENCY)")
    parser.add_argument("--batch", type=int, default=env("OPSDB_WORKER_BATCH", "1"),
                        help="claim up to N jobs at once, run them in turn, report them in one request "
                             "(for many small jobs; OPSDB_WORKER_BATCH)")
    parser.add_argument("--lease-seconds", type=int, default=env("OPSDB_WORKER_LEASE_SECONDS", "600"),
                        help="lease asked for per job; heartbeats every third of it (OPSDB_WORKER_LEASE_SECONDS)")
    parser.add_argument("--log-dir", default=env("OPSDB_WORKER_LOG_DIR", "var/worker-logs"),
                        help="folder for the detailed per-job logs (OPSDB_WORKER_LOG_DIR)")
    parser.add_argument("--poll-interval", type=float, default=env("OPSDB_WORKER_POLL_INTERVAL", "10"),
                        help="seconds to wait when there is no work, ±20%% jitter (OPSDB_WORKER_POLL_INTERVAL)")
    parser.add_argument("--grace-seconds", type=float, default=env("OPSDB_WORKER_GRACE_SECONDS", "30"),
                        help="on SIGTERM/SIGINT, time the running jobs get before they are failed back "
                             "(OPSDB_WORKER_GRACE_SECONDS)")
    parser.add_argument("--once", action="store_true", default=env("OPSDB_WORKER_ONCE") == "1",
                        help="each loop does at most one job, then the worker exits")
    parser.add_argument("--method-command", action="append", type=method_command, default=[],
                        metavar="METHOD=TEMPLATE",
                        help="command for a transfer method, e.g. "
                             "bbcp='bbcp -a {checkpoint_dir} -k {source} {host}:{destination}' "
                             "(OPSDB_WORKER_COMMAND_<METHOD>); copy is in-process unless set")
    parser.add_argument("--checksum-command", default=env("OPSDB_WORKER_CHECKSUM_COMMAND", ""),
                        help="command printing a checksum of {path} on {host}, to verify non-local destinations")
    parser.add_argument("--state-dir", default=env("OPSDB_WORKER_STATE_DIR", "var/worker-state"),
                        help="folder for the worker's own records (the partial files it may leave); one per "
                             "worker process (OPSDB_WORKER_STATE_DIR)")
    parser.add_argument("--housekeeping-interval", type=float,
                        default=env("OPSDB_WORKER_HOUSEKEEPING_INTERVAL", "600"),
                        help="seconds between removals of partial files no attempt will use; also done at start "
                             "(OPSDB_WORKER_HOUSEKEEPING_INTERVAL)")
    parser.add_argument("--http-retries", type=int, default=env("OPSDB_WORKER_HTTP_RETRIES", "6"),
                        help="attempts per HTTP call while ops-db is unreachable or answers 5xx/429")
    parser.add_argument("--http-timeout", type=float, default=env("OPSDB_WORKER_HTTP_TIMEOUT", "30"))
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def commands_from(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Environment templates first, flags over them."""
    commands = {m: os.environ[f"OPSDB_WORKER_COMMAND_{m.upper()}"] for m in METHODS
                if os.environ.get(f"OPSDB_WORKER_COMMAND_{m.upper()}")}
    commands.update(dict(pairs))
    return commands


def default_methods(commands: dict[str, str]) -> list[str]:
    """copy, plus each method this host can run (its program is installed or a command is configured)."""
    return [m for m in METHODS if m == "copy" or m in commands
            or (m in METHOD_PROGRAMS and shutil.which(METHOD_PROGRAMS[m]))]


def config_from(args: argparse.Namespace) -> WorkerConfig:
    if not args.api_url:
        raise ConfigError("--api-url (or OPSDB_API_URL) is required")
    if not args.token:
        raise ConfigError("--token (or OPSDB_TOKEN) is required")
    for option, value, minimum in (("--concurrency", args.concurrency, 1), ("--lease-seconds", args.lease_seconds, 3),
                                   ("--http-retries", args.http_retries, 1), ("--batch", args.batch, 1)):
        if value < minimum:
            raise ConfigError(f"{option} must be at least {minimum}, got {value}")
    if args.poll_interval < 0 or args.grace_seconds < 0:
        raise ConfigError("--poll-interval and --grace-seconds cannot be negative")
    if args.housekeeping_interval <= 0:
        raise ConfigError("--housekeeping-interval must be positive")
    commands = commands_from(args.method_command)
    methods = csv_list(args.methods, METHODS, "--methods") if args.methods else default_methods(commands)
    return WorkerConfig(
        api_url=args.api_url, token=args.token, name=args.name, sites=csv_list(args.sites),
        kinds=csv_list(args.kinds, KINDS, "--kinds"), methods=methods, concurrency=args.concurrency,
        lease_seconds=args.lease_seconds, log_dir=Path(args.log_dir), poll_interval=args.poll_interval,
        once=args.once, grace_seconds=args.grace_seconds, commands=commands, checksum_command=args.checksum_command,
        state_dir=Path(args.state_dir), housekeeping_interval=args.housekeeping_interval, batch=args.batch,
    )


def startup_line(config: WorkerConfig) -> str:
    commands = "; ".join(f"{m}: {t}" for m, t in sorted(config.commands.items())) or "defaults"
    return (f"opsdb-worker {config.name}: api {config.api_url}, sites {','.join(config.sites) or 'any'}, "
            f"kinds {','.join(config.kinds)}, methods {','.join(config.methods)}, concurrency {config.concurrency}, "
            f"batch {config.batch}, "
            f"lease {config.lease_seconds}s, logs in {config.log_dir.resolve()}, commands {commands}"
            f"{', once' if config.once else ''}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from(args)
    except ConfigError as exc:
        parser.error(str(exc))
    print(startup_line(config), flush=True)
    client = ApiClient(config.api_url, config.token, retry=RetryPolicy(attempts=args.http_retries),
                       timeout=args.http_timeout)
    runner = Runner(config, client, echo=lambda line: print(line, flush=True))
    outcomes = runner.run()
    print(f"opsdb-worker {config.name}: stopped after {len(outcomes)} job(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
