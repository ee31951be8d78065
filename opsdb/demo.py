"""The demo topology, catalogue and accounts of ``manage.py load_demo``.

Idempotent: every object is looked up by its natural key and created only when missing, and
files are (re)written only when absent or different. File contents come from seeded random
generators and tar headers are fixed, so the archives and their checksums are the same on
every run and every machine. Paths follow docs/worker-protocol.md (``raw/<package name>``).
"""

import hashlib
import io
import random
import secrets
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from opsdb.choices import ChecksumAlgorithm, CopyStatus, DeletionPolicy, LocationType, StorageType, TransferMethod
from opsdb.models import (
    DataLocation,
    Instrument,
    Observation,
    RawDataFile,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
    WorkerProfile,
)
from opsdb.roles import OPERATORS, SCIENTISTS, WORKERS
from opsdb.services import job_claim, job_fail
from opsdb.tokens import api_token_create
from staging.models import LongTermArchiveTransfer
from transfers.choices import RouteType
from transfers.models import DataTransferRoute

SITES = {
    "ccat": "FYST at Cerro Chajnantor, Chile (5600 m)",
    "cologne": "University of Cologne, Germany",
    "cornell": "Cornell University, Ithaca, USA",
}
# site → [(name, type, priority)]; the main buffer is preferred over the express one.
LOCATIONS = {
    "ccat": [
        ("source", LocationType.SOURCE, 0),
        ("buffer", LocationType.BUFFER, 10),
        ("buffer-express", LocationType.BUFFER, 0),
    ],
    "cologne": [
        ("buffer", LocationType.BUFFER, 0),
        ("archive", LocationType.LONG_TERM_ARCHIVE, 0),
        ("processing", LocationType.PROCESSING, 0),
    ],
    "cornell": [
        ("buffer", LocationType.BUFFER, 0),
        ("archive", LocationType.LONG_TERM_ARCHIVE, 0),
        ("processing", LocationType.PROCESSING, 0),
    ],
}
MB = 10**6
# Custody: what each location deletes once the data is safe, and its capacity, small like the demo's
# data (about 2 MB of raw packages), so the fill and the watermarks show. The telescope's buffers
# and cologne's relay buffer empty as soon as the data is archived at cologne and cornell;
# cornell's buffer keeps archived data as a cache until it passes its high watermark.
CUSTODY = {
    "ccat:source": (DeletionPolicy.NEVER, 20 * MB),
    "ccat:buffer": (DeletionPolicy.WHEN_SAFE, 10 * MB),
    "ccat:buffer-express": (DeletionPolicy.WHEN_SAFE, 5 * MB),
    "cologne:buffer": (DeletionPolicy.WHEN_SAFE, 10 * MB),
    "cologne:archive": (DeletionPolicy.NEVER, 100 * MB),
    "cologne:processing": (DeletionPolicy.NEVER, 20 * MB),
    "cornell:buffer": (DeletionPolicy.UNDER_PRESSURE, 3 * MB),
    "cornell:archive": (DeletionPolicy.NEVER, 100 * MB),
    "cornell:processing": (DeletionPolicy.NEVER, 20 * MB),
}
INSTRUMENTS = {
    "Prime-Cam": "Wide-field broadband and spectroscopic imager (280–850 GHz).",
    "CHAI": "CCAT Heterodyne Array Instrument: multi-pixel spectrometer at 460/810 GHz.",
}
_T0 = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
# (instrument, target, start, minutes, packages); the last two were archived at cologne long ago.
OBSERVATIONS = [
    ("Prime-Cam", "Orion-KL", _T0, 75, 3),
    ("CHAI", "NGC 253", _T0 + timedelta(days=1, hours=3), 50, 2),
    ("Prime-Cam", "Sgr B2", _T0 + timedelta(days=2, hours=1), 90, 2),
    ("CHAI", "M83", _T0 + timedelta(days=3, hours=5), 40, 1),
    ("Prime-Cam", "W43", _T0 + timedelta(days=4, hours=2), 60, 2),
    ("CHAI", "CenA", _T0 + timedelta(days=5, hours=4), 45, 1),
]
ARCHIVED_OBSERVATIONS = [
    ("Prime-Cam", "IRC+10216", _T0 - timedelta(days=60), 55, 2),
    ("CHAI", "G34.26+0.15", _T0 - timedelta(days=58, hours=3), 35, 1),
]
# Arrived at cologne's buffer, but archiving it failed three times: waiting for an operator's retry.
STUCK_OBSERVATION = ("CHAI", "NGC 6334I", _T0 - timedelta(days=20, hours=1), 30, 1)
STUCK_ERROR = "rsync: write failed on \"{path}\": No space left on device (28)"
ACCOUNTS = [
    ("operator", OPERATORS, True),
    ("scientist", SCIENTISTS, False),
    ("scientist2", SCIENTISTS, False),
    ("worker-ccat", WORKERS, False),
    ("worker-cologne", WORKERS, False),
    ("worker-cornell", WORKERS, False),
]
TAR_MTIME = int(_T0.timestamp())
INSTRUMENT_CODES = {"Prime-Cam": "pcam", "CHAI": "chai"}
FILE_KINDS = {"Prime-Cam": ("detector-array", "fits"), "CHAI": ("spectra", "fits")}


@dataclass
class DemoReport:
    """What one run created or wrote; ``secrets`` holds passwords and tokens shown once."""

    created: dict[str, int] = field(default_factory=dict)
    files_written: int = 0
    bytes_on_disk: int = 0
    secrets: list[tuple[str, str, str]] = field(default_factory=list)  # (username, password, token)

    def add(self, what: str, was_created: bool, count: int = 1) -> None:
        if was_created:
            self.created[what] = self.created.get(what, 0) + count

    @property
    def changed(self) -> bool:
        return bool(self.created or self.files_written)


def demo_root() -> Path:
    return Path(settings.VAR_DIR).resolve() / "demo"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_if_different(path: Path, data: bytes, report: DemoReport) -> None:
    """Write ``data`` unless the file already holds exactly it."""
    report.bytes_on_disk += len(data)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    report.files_written += 1


def build_tar(members: list[tuple[str, bytes]]) -> bytes:
    """A tar of ``(arcname, content)`` with fixed headers, so equal input gives equal bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, data in members:
            info = tarfile.TarInfo(arcname)
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- topology ------------------------------------------------------------------------------

def load_topology(report: DemoReport) -> dict[str, DataLocation]:
    """Sites, their locations (folders created on disk) and the routes; returns "site:name" → location."""
    locations: dict[str, DataLocation] = {}
    for name, title in SITES.items():
        site, created = Site.objects.get_or_create(name=name, defaults={"title": title})
        report.add("sites", created)
        for loc_name, loc_type, priority in LOCATIONS[name]:
            base_path = demo_root() / name / loc_name
            policy, capacity = CUSTODY[f"{name}:{loc_name}"]
            location, created = DataLocation.objects.get_or_create(
                site=site, name=loc_name,
                defaults={"location_type": loc_type, "storage_type": StorageType.DISK, "base_path": str(base_path),
                          "priority": priority, "deletion_policy": policy, "capacity_bytes": capacity},
            )
            report.add("locations", created)
            Path(location.base_path).mkdir(parents=True, exist_ok=True)
            locations[f"{name}:{loc_name}"] = location
    load_routes(locations, report)
    return locations


def load_routes(locations: dict[str, DataLocation], report: DemoReport) -> None:
    sites = {loc.site.name: loc.site for loc in locations.values()}
    site_level = [
        (sites["ccat"], sites["cologne"], RouteType.DIRECT, TransferMethod.BBCP, None),
        (sites["ccat"], sites["cornell"], RouteType.RELAY, TransferMethod.BBCP, sites["cologne"]),
    ]
    for origin, destination, route_type, method, relay in site_level:
        pair = DataTransferRoute.objects.site_level().filter(origin_site=origin, destination_site=destination)
        created = not pair.exists()
        if created:
            save_route(DataTransferRoute(origin_site=origin, destination_site=destination, route_type=route_type,
                                         method=method, relay_site=relay))
        report.add("routes", created)
    express, archive = locations["ccat:buffer-express"], locations["cologne:archive"]
    custom = DataTransferRoute.objects.custom().filter(origin_location=express, destination_location=archive)
    if not custom.exists():
        save_route(DataTransferRoute(
            origin_site=express.site, destination_site=archive.site, route_type=RouteType.CUSTOM,
            method=TransferMethod.RSYNC, origin_location=express, destination_location=archive,
        ))
        report.add("routes", True)


def save_route(route: DataTransferRoute) -> None:
    route.full_clean()  # the demo's routes obey the same rules as an operator's
    route.save()


# --- catalogue -----------------------------------------------------------------------------

def package_files(obs_id: str, instrument: str, index: int) -> list[tuple[str, bytes]]:
    """The deterministic files of one raw package: 2–3 files of 4–100 KB of seeded random bytes."""
    rng = random.Random(f"opsdb-demo/{obs_id}/{index}")
    stem, ext = FILE_KINDS[instrument]
    files = []
    for n in range(1, rng.randint(2, 3) + 1):
        size = rng.randint(4 * 1024, 100 * 1024)
        files.append((f"{obs_id}/part{index:02d}/{stem}-{n:02d}.{ext}", rng.randbytes(size)))
    return files


def load_observations(locations: dict[str, DataLocation], report: DemoReport) -> None:
    instruments = {}
    for name, description in INSTRUMENTS.items():
        instruments[name], created = Instrument.objects.get_or_create(name=name, defaults={"description": description})
        report.add("instruments", created)
    for number, spec in enumerate(ARCHIVED_OBSERVATIONS, start=1):
        load_observation(spec, f"{number:03d}", instruments, [locations["cologne:archive"]], report)
    ccat = [locations["ccat:buffer"]]
    for number, spec in enumerate(OBSERVATIONS, start=len(ARCHIVED_OBSERVATIONS) + 1):
        load_observation(spec, f"{number:03d}", instruments, ccat, report, source=locations["ccat:source"])
    number = len(ARCHIVED_OBSERVATIONS) + len(OBSERVATIONS) + 1
    stuck = load_observation(STUCK_OBSERVATION, f"{number:03d}", instruments, [locations["cologne:buffer"]], report)
    load_failed_archive(stuck[0], locations["cologne:buffer"], locations["cologne:archive"], report)


def load_failed_archive(package: RawDataPackage, buffer: DataLocation, archive: DataLocation,
                        report: DemoReport) -> None:
    """An archive transfer that used up its attempts, recorded through the services like a real worker's."""
    if LongTermArchiveTransfer.objects.filter(raw_package=package, destination_location=archive).exists():
        return
    job = LongTermArchiveTransfer.objects.create(raw_package=package, source_location=buffer,
                                                 destination_location=archive)
    error = STUCK_ERROR.format(path=f"{archive.base_path}/raw/{package.name}")
    for attempt in range(1, LongTermArchiveTransfer.max_attempts() + 1):
        job = job_claim(job=job, worker="cologne-dtn-1")
        job, _ = job_fail(job=job, lease_token=job.lease_token, error=error,
                          log_path=f"logs/archive-{job.pk}-attempt-{attempt}.log")
    report.add("failed archive transfers", True)


def load_observation(spec, number: str, instruments, copy_at: list[DataLocation], report: DemoReport,
                     source: DataLocation | None = None) -> list[RawDataPackage]:
    """One observation, its packages and files, their archives on disk at ``copy_at`` and copy records."""
    instrument, target, start, minutes, n_packages = spec
    obs_id = f"{INSTRUMENT_CODES[instrument]}-{start:%Y%m%d}-{number}"
    observation, created = Observation.objects.get_or_create(
        obs_id=obs_id,
        defaults={"instrument": instruments[instrument], "target_name": target, "start_time": start,
                  "end_time": start + timedelta(minutes=minutes)},
    )
    report.add("observations", created)
    packages = []
    for index in range(1, n_packages + 1):
        files = package_files(obs_id, instrument, index)
        if source is not None:  # the instrument's files as they arrived at the telescope
            for relative_path, data in files:
                write_if_different(Path(source.base_path) / relative_path, data, report)
        archive = build_tar(files)
        package = load_package(f"{obs_id}-{index:02d}.tar", observation, archive, files,
                               observation.end_time + timedelta(minutes=5 * index), report)
        for location in copy_at:
            path = f"raw/{package.name}"
            write_if_different(Path(location.base_path) / path, archive, report)
            _, created = RawDataPackageCopy.objects.get_or_create(
                raw_package=package, location=location,
                defaults={"status": CopyStatus.PRESENT, "path": path, "checksum_verified": package.checksum,
                          "verified_at": package.created_at},
            )
            report.add("raw package copies", created)
        packages.append(package)
    return packages


def load_package(name: str, observation: Observation, archive: bytes, files: list[tuple[str, bytes]],
                 created_at: datetime, report: DemoReport) -> RawDataPackage:
    package, created = RawDataPackage.objects.get_or_create(
        name=name,
        defaults={"observation": observation, "size": len(archive), "checksum": sha256_bytes(archive),
                  "checksum_algorithm": ChecksumAlgorithm.SHA256, "created_at": created_at},
    )
    report.add("raw packages", created)
    if created:
        RawDataFile.objects.bulk_create([
            RawDataFile(package=package, relative_path=path, size=len(data), checksum=sha256_bytes(data))
            for path, data in files
        ])
        report.add("raw files", True, len(files))
    return package


# --- accounts ------------------------------------------------------------------------------

def load_accounts(report: DemoReport) -> None:
    """The demo accounts; a password (for people) or a token (for workers) is made and reported only on creation.

    Worker accounts ``worker-<site>`` have no usable password (they cannot sign in to any page) and
    may claim jobs only at their own site.
    """
    for username, group_name, is_staff in ACCOUNTS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": is_staff, "email": f"{username}@example.org"}
        )
        report.add("accounts", created)
        user.groups.add(Group.objects.get(name=group_name))
        if group_name == WORKERS:
            load_worker(user, created, report)
        elif created:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])
            report.secrets.append((username, password, ""))


def load_worker(user: User, created: bool, report: DemoReport) -> None:
    profile, _ = WorkerProfile.objects.get_or_create(user=user)
    profile.sites.set(Site.objects.filter(name=user.username.removeprefix("worker-")))
    if user.has_usable_password():  # made by an older demo, or by hand
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if created or not user.api_tokens.active().exists():
        _, token = api_token_create(user=user, name="demo")
        report.secrets.append((user.username, "", token))


@transaction.atomic
def load_demo() -> DemoReport:
    """Build (or complete) the demo; returns what this run created."""
    report = DemoReport()
    locations = load_topology(report)
    load_observations(locations, report)
    load_accounts(report)
    return report
