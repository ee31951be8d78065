"""A two-site topology in temporary folders, real raw package archives, and a way to run the worker.

The worker runs as a real process (``python -m worker.cli``) against the live test server, so
what is tested is exactly what an operator runs: only HTTP between it and ops-db.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from opsdb.choices import LocationType
from opsdb.models import DataLocation, RawDataPackage, Site
from tests import factories as f

REPO = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256(path.read_bytes())


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a file in place without changing its size."""
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def make_raw_package(location: DataLocation, name: str, files: dict[str, bytes]) -> RawDataPackage:
    """Write a real raw package tar at ``location`` and register it, its files and its copy."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative_path, data in files.items():
            info = tarfile.TarInfo(relative_path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    content = buffer.getvalue()
    path = Path(location.base_path, "raw", name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    package = f.RawDataPackageFactory(name=name, size=len(content), checksum=sha256(content))
    for relative_path, data in files.items():
        f.RawDataFileFactory(package=package, relative_path=relative_path, size=len(data), checksum=sha256(data))
    f.RawDataPackageCopyFactory(raw_package=package, location=location, path=f"raw/{name}",
                                checksum_verified=package.checksum)
    return package


@dataclass
class Topology:
    root: Path
    ccat: Site
    cologne: Site
    ccat_buffer: DataLocation
    cologne_buffer: DataLocation
    cologne_archive: DataLocation
    cologne_processing: DataLocation
    packages: list[RawDataPackage] = field(default_factory=list)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def path(self, location: DataLocation, relative: str) -> Path:
        return Path(location.base_path, relative)


def _location(site: Site, root: Path, location_type: str) -> DataLocation:
    base = root / site.name / location_type.lower()
    base.mkdir(parents=True)
    return f.DataLocationFactory(site=site, location_type=location_type, base_path=str(base), host="")


@pytest.fixture
def topology(role_groups, tmp_path) -> Topology:
    """ccat (buffer) and cologne (buffer, archive, processing) with two real raw packages at ccat."""
    root = tmp_path / "sites"
    ccat, cologne = f.SiteFactory(name="ccat"), f.SiteFactory(name="cologne")
    topo = Topology(
        root=root, ccat=ccat, cologne=cologne, ccat_buffer=_location(ccat, root, LocationType.BUFFER),
        cologne_buffer=_location(cologne, root, LocationType.BUFFER),
        cologne_archive=_location(cologne, root, LocationType.LONG_TERM_ARCHIVE),
        cologne_processing=_location(cologne, root, LocationType.PROCESSING),
    )
    for n in (1, 2):
        files = {f"scan-{n}a.fits": os.urandom(20_000 + n), f"cal/scan-{n}b.fits": os.urandom(5_000 * n)}
        name = f"raw-obs{n}.tar"
        topo.packages.append(make_raw_package(topo.ccat_buffer, name, files))
        topo.files[name] = files
    return topo


@pytest.fixture
def worker_token(role_groups, topology) -> str:
    """A worker account for both sites, made the way an operator makes one."""
    out = io.StringIO()
    call_command("create_worker", "e2e-worker", "--site", "ccat", "--site", "cologne", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@dataclass
class WorkerRun:
    returncode: int
    stdout: str
    stderr: str


class WorkerLauncher:
    """Starts ``python -m worker.cli`` against the live server with a shared log folder."""

    def __init__(self, url: str, token: str, log_dir: Path):
        self.url, self.token, self.log_dir = url, token, log_dir
        self.state_dir = log_dir.parent / "worker-state"
        self.processes: list[subprocess.Popen] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "worker.cli", "--api-url", self.url, "--token", self.token,
                "--name", "e2e-worker", "--log-dir", str(self.log_dir), "--poll-interval", "0.2",
                "--state-dir", str(self.state_dir),
                "--http-retries", "3", *args]

    def run(self, *args: str, timeout: float = 60) -> WorkerRun:
        """Run the worker to its end (use --once) and return what it printed."""
        done = subprocess.run(self.argv(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=_env())
        return WorkerRun(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str) -> subprocess.Popen:
        process = subprocess.Popen(self.argv(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=_env())
        self.processes.append(process)
        return process

    def kill_leftovers(self) -> None:
        """Kill the workers this launcher started that a failed test left running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSDB_")}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def launcher(live_server, worker_token, tmp_path):
    launcher = WorkerLauncher(live_server.url, worker_token, tmp_path / "worker-logs")
    yield launcher
    launcher.kill_leftovers()


def wait_until(predicate, timeout: float = 20, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class FlakyProxy:
    """Sits between the worker and the live server: the first claim finds ops-db down (503), and the
    first ``complete`` reaches ops-db but its answer is lost (502) — the worker must retry both."""

    def __init__(self, upstream: str):
        self.seen: list[tuple[str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                first = not any(path == self.path for path, _ in proxy.seen)
                if first and self.path.endswith("/claim/"):
                    return self._answer(503, b'{"detail": "down for a moment"}')
                upstream_answer = requests.post(upstream + self.path, data=body, timeout=30, headers={
                    "Authorization": self.headers["Authorization"], "Content-Type": "application/json"})
                if first and self.path.endswith("/complete/"):
                    proxy.seen.append((self.path, upstream_answer.status_code))
                    return self._answer(502, b"")
                return self._answer(upstream_answer.status_code, upstream_answer.content)

            def _answer(self, status: int, content: bytes):
                proxy.seen.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

