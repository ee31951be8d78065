"""The cost of an interrupted transfer, with and without resume (not a test).

    python bench/resume_interruption.py [--mb 1024] [--at 10,50,90] [--dir /path/on/the/disk]

For each kill point, a copy is started in a separate process and killed with SIGKILL once its
partial file holds that share of the source; then the next attempt runs and what it wrote is
measured. Two copy methods of the reference worker:

- in-process copy (``worker.storage.copy_into``): with resume the next attempt keeps the verified
  partial file and appends; without resume (the worker before resumable transfers) every attempt
  starts from an empty file.
- rsync: with resume ``rsync --partial --append-verify`` appends to the partial file (bytes moved
  are rsync's own "Literal data"); without resume ``rsync -a`` into a fresh file, as the old
  default template did.

Figures: where the kill landed, bytes the next attempt moved again (as a share of the bundle),
and the next attempt's time against a full uninterrupted copy measured in the same run.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker import storage  # noqa: E402

COPY_CHILD = """
import sys
from pathlib import Path
from worker import storage
source, destination = Path(sys.argv[1]), Path(sys.argv[2])
with storage.Partial(destination, "transfer-1") as partial:
    storage.copy_into(source, partial)
    partial.place()
"""


def kill_at(argv: list[str], partial: Path, share: float, total: int) -> int:
    """Run ``argv``, SIGKILL it once ``partial`` holds ``share`` of ``total`` bytes; the bytes it left."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    while process.poll() is None:
        if partial.exists() and partial.stat().st_size >= share * total:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()
    return partial.stat().st_size if partial.exists() else 0


def timed(func) -> tuple[float, object]:
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


def in_process(source: Path, target: Path, resume: bool):
    def attempt() -> int:
        with storage.Partial(target, "transfer-1") as partial:
            if not resume:
                partial.discard()
            result = storage.copy_into(source, partial)
            partial.place()
        return result.written
    return attempt


def rsync(source: Path, target: Path, resume: bool):
    partial = storage.partial_path(target, "transfer-1")

    def attempt() -> int:
        if resume:
            argv = ["rsync", "--partial", "--append-verify", "--stats", str(source), str(partial)]
        else:
            partial.unlink(missing_ok=True)  # the old worker wrote every attempt to a fresh file
            argv = ["rsync", "-a", "--stats", str(source), str(partial)]
        output = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        os.replace(partial, target)
        return int(re.search(r"Literal data: ([\d,]+) bytes", output).group(1).replace(",", ""))
    return attempt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024, help="bundle size in MB")
    parser.add_argument("--at", default="10,50,90", help="kill points in percent")
    parser.add_argument("--dir", default=None, help="folder on the disk to measure")
    args = parser.parse_args()
    points = [int(p) / 100 for p in args.at.split(",")]
    methods = [("in-process copy", COPY_CHILD, in_process)]
    if shutil.which("rsync"):
        methods.append(("rsync", None, rsync))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        source = root / "src" / "dtp.tar"
        source.parent.mkdir()
        size = args.mb * 2**20
        with open(source, "wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(2**20))
        checksum = storage.file_checksum(source)
        print(f"bundle: {args.mb} MB; kill with SIGKILL at {args.at} %; next attempt measured\n")
        print(f"{'method':<16} {'resume':<7} {'killed at':>9} {'moved again':>12} {'share':>6} "
              f"{'next attempt':>12} {'vs full copy':>12}")
        for label, child, make in methods:
            target = root / "dst" / "dtp.tar"
            target.parent.mkdir(exist_ok=True)
            full_seconds, _ = timed(make(source, target, resume=False))
            target.unlink()
            for resume in (False, True):
                for share in points:
                    partial = storage.partial_path(target, "transfer-1")
                    argv = ([sys.executable, "-c", child, str(source), str(target)] if child else
                            ["rsync", "--partial", "--append-verify", str(source), str(partial)])
                    left = kill_at(argv, partial, share, size)
                    seconds, moved = timed(make(source, target, resume))
                    assert hashlib.sha256(target.read_bytes()).hexdigest() == checksum, "copy differs"
                    target.unlink()
                    print(f"{label:<16} {'yes' if resume else 'no':<7} {100 * left / size:8.1f}% "
                          f"{moved / 2**20:9.0f} MB {100 * moved / size:5.1f}% {seconds:10.2f} s "
                          f"{seconds / full_seconds:11.2f}x")
            print(f"{label:<16} full uninterrupted copy: {full_seconds:.2f} s\n")


if __name__ == "__main__":
    main()
