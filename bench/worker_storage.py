"""Throughput of the reference worker's storage steps on this machine (not a test).

    python bench/worker_storage.py [--mb 512] [--members 8] [--dir /path/on/the/disk/to/measure]

Prints MB/s for: sha256 of a file, a verified atomic copy (source hashed while read + copy read
back), building a bundle tar with member verification, and a verified safe extraction.
"""

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker import storage  # noqa: E402


def timed(label: str, megabytes: float, func) -> None:
    started = time.perf_counter()
    func()
    seconds = time.perf_counter() - started
    print(f"{label:<42} {megabytes:8.0f} MB {seconds:7.2f} s {megabytes / seconds:8.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=512, help="total payload in MB")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        member_size = args.mb * 2**20 // args.members
        inputs = []
        for n in range(args.members):
            path = root / "raw" / f"raw-{n}.tar"
            path.parent.mkdir(exist_ok=True)
            data = os.urandom(member_size)
            path.write_bytes(data)
            inputs.append(storage.TarInput(path, f"raw/raw-{n}.tar", hashlib.sha256(data).hexdigest(), size=len(data)))
        first = inputs[0].path
        one = member_size / 2**20
        timed("sha256 of one member", one, lambda: storage.file_checksum(first))
        timed("verified atomic copy of one member", one,
              lambda: storage.atomic_copy(first, root / "copy" / "x.tar", expected=inputs[0].checksum))
        bundle = root / "bundles" / "dtp.tar"
        built = {}
        timed(f"build bundle ({args.members} members, verified)", args.mb,
              lambda: built.setdefault("r", storage.build_tar(bundle, inputs)))
        expected = {i.arcname: storage.Expected(i.checksum) for i in inputs}
        timed("safe extract bundle (verified)", args.mb,
              lambda: storage.safe_extract(bundle, root / "out", expected=expected))


if __name__ == "__main__":
    main()
