"""``manage.py load_demo``: the topology, catalogue with real files, and accounts, created once."""

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.http import HttpRequest
from django.urls import reverse
from django_fsm_log.models import StateLog
from rest_framework.test import APIClient

from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import (
    ApiToken,
    DataLocation,
    Instrument,
    Observation,
    RawDataFile,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
)
from staging.models import LongTermArchiveTransfer
from transfers.choices import RouteType
from transfers.models import DataTransferRoute

pytestmark = pytest.mark.django_db

DEMO_MODELS = (Site, DataLocation, DataTransferRoute, Instrument, Observation, RawDataPackage, RawDataFile,
               RawDataPackageCopy, LongTermArchiveTransfer, StateLog, User, ApiToken)


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def load_demo() -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in DEMO_MODELS}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_file(copy: RawDataPackageCopy) -> Path:
    return Path(copy.location.base_path) / copy.path


def test_load_demo_twice_creates_everything_once(var_dir):
    first_output = load_demo()
    first = counts()
    files_after_first = sorted((p, p.stat().st_mtime_ns) for p in var_dir.rglob("*") if p.is_file())

    second_output = load_demo()

    assert counts() == first
    assert sorted((p, p.stat().st_mtime_ns) for p in var_dir.rglob("*") if p.is_file()) == files_after_first
    assert "Demo data loaded: created 3 sites, 9 locations, 3 routes" in first_output
    assert "Demo data already loaded: nothing changed" in second_output
    assert "password" not in second_output
    assert "token" not in second_output.lower()


def test_load_demo_builds_the_topology(var_dir):
    load_demo()

    locations = {str(loc): loc for loc in DataLocation.objects.select_related("site")}
    assert sorted(locations) == [
        "ccat:buffer", "ccat:buffer-express", "ccat:source",
        "cologne:archive", "cologne:buffer", "cologne:processing",
        "cornell:archive", "cornell:buffer", "cornell:processing",
    ]
    assert locations["ccat:source"].location_type == LocationType.SOURCE
    assert locations["ccat:buffer-express"].location_type == LocationType.BUFFER
    assert locations["cornell:archive"].location_type == LocationType.LONG_TERM_ARCHIVE
    assert locations["cologne:processing"].location_type == LocationType.PROCESSING
    for name, loc in locations.items():
        assert loc.base_path == str(var_dir.resolve() / "demo" / name.replace(":", "/"))
        assert Path(loc.base_path).is_dir()


def test_load_demo_routes_are_valid_and_as_designed(var_dir):
    load_demo()

    routes = {str(r): r for r in DataTransferRoute.objects.select_related(
        "origin_site", "destination_site", "relay_site", "origin_location__site", "destination_location__site")}
    assert sorted(routes) == [
        "ccat → cologne (direct, bbcp)",
        "ccat → cologne → cornell (relay, bbcp)",
        "ccat:buffer-express → cologne:archive (custom (location override), rsync)",
    ]
    for route in routes.values():
        route.full_clean()
    assert {r.route_type for r in routes.values()} == set(RouteType.values)


def test_load_demo_files_on_disk_match_records(var_dir):
    load_demo()

    copies = RawDataPackageCopy.objects.select_related("raw_package", "location__site")
    assert copies.count() == RawDataPackage.objects.count()
    for copy in copies:
        package, path = copy.raw_package, copy_file(copy)
        assert copy.status == CopyStatus.PRESENT
        assert copy.path == f"raw/{package.name}"
        assert (path.stat().st_size, sha256(path)) == (package.size, package.checksum)
        files = {f.relative_path: (f.size, f.checksum) for f in package.files.all()}
        with tarfile.open(path) as tar:
            members = {m.name: (m.size, hashlib.sha256(tar.extractfile(m).read()).hexdigest()) for m in tar}
        assert members == files
        assert 2 <= len(files) <= 3
        assert all(4 * 1024 <= size <= 100 * 1024 for size, _ in files.values())


def test_load_demo_catalogue_flows_from_ccat_and_two_observations_are_archived(var_dir):
    load_demo()

    at = {
        name: set(RawDataPackageCopy.objects.filter(location__site__name=name.split(":")[0],
                                                    location__name=name.split(":")[1])
                  .values_list("raw_package__observation__target_name", flat=True))
        for name in ("ccat:buffer", "cologne:archive")
    }
    assert at["ccat:buffer"] == {"Orion-KL", "NGC 253", "Sgr B2", "M83", "W43", "CenA"}
    assert len(at["cologne:archive"]) == 2
    assert not at["ccat:buffer"] & at["cologne:archive"]
    assert set(Instrument.objects.values_list("name", flat=True)) == {"Prime-Cam", "CHAI"}
    assert all(1 <= obs.packages.count() <= 3 for obs in Observation.objects.all())


def test_load_demo_rewrites_a_missing_file_identically(var_dir):
    load_demo()
    copy = RawDataPackageCopy.objects.select_related("raw_package", "location").first()
    copy_file(copy).unlink()

    output = load_demo()

    assert "wrote 1 file(s)" in output
    assert sha256(copy_file(copy)) == copy.raw_package.checksum


def test_load_demo_stays_small(var_dir):
    load_demo()

    total = sum(p.stat().st_size for p in var_dir.rglob("*") if p.is_file())
    assert total < 20 * 10**6


def test_load_demo_accounts_have_their_roles_and_printed_passwords_work(var_dir, client):
    output = load_demo()
    passwords = dict(re.findall(r"^\s+(\S+)\s+password (\S+)", output, flags=re.MULTILINE))

    roles = {u.username: (u.is_staff, sorted(u.groups.values_list("name", flat=True)))
             for u in User.objects.prefetch_related("groups")}
    assert roles == {
        "operator": (True, ["operators"]),
        "scientist": (False, ["scientists"]), "scientist2": (False, ["scientists"]),
        "worker-ccat": (False, ["workers"]), "worker-cologne": (False, ["workers"]),
        "worker-cornell": (False, ["workers"]),
    }
    tokens = dict(re.findall(r"^\s+(\S+)\s+API token (\S+)", output, flags=re.MULTILINE))
    assert set(tokens) == {"worker-ccat", "worker-cologne", "worker-cornell"}
    assert set(passwords) == {"operator", "scientist", "scientist2"}
    assert APIClient(HTTP_AUTHORIZATION=f"Token {tokens['worker-ccat']}").get("/api/v1/sites/").status_code == 200
    assert "http://127.0.0.1:8000/admin/" in output
    assert client.login(request=HttpRequest(), username="operator", password=passwords["operator"])
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.login(request=HttpRequest(), username="scientist", password=passwords["scientist"])
    assert client.get(reverse("admin:index")).status_code == 302


def test_demo_workers_cannot_sign_in_and_claim_only_at_their_site(var_dir):
    load_demo()

    workers = User.objects.filter(username__startswith="worker-").prefetch_related("worker_profile__sites")
    assert {w.username: (w.has_usable_password(), [s.name for s in w.worker_profile.sites.all()])
            for w in workers} == {
        "worker-ccat": (False, ["ccat"]), "worker-cologne": (False, ["cologne"]),
        "worker-cornell": (False, ["cornell"]),
    }


def test_load_demo_takes_away_a_demo_workers_password_left_by_an_older_demo(var_dir, client):
    load_demo()
    worker = User.objects.get(username="worker-ccat")
    worker.set_password("an-old-demo-password")
    worker.save()

    load_demo()

    assert client.login(request=HttpRequest(), username="worker-ccat", password="an-old-demo-password") is False


def test_load_demo_keeps_existing_passwords(var_dir):
    load_demo()
    operator = User.objects.get(username="operator")
    operator.set_password("chosen-by-the-operator")
    operator.save()

    load_demo()

    operator.refresh_from_db()
    assert operator.check_password("chosen-by-the-operator")


def test_load_demo_leaves_one_archive_transfer_waiting_for_an_operator(var_dir):
    load_demo()

    job = LongTermArchiveTransfer.objects.select_related("source_location__site", "raw_package").get()
    assert (job.status, job.requires_intervention, job.attempts) == (JobStatus.FAILED, True, 3)
    assert str(job.source_location) == "cologne:buffer"
    assert "No space left on device" in job.last_error
    assert list(StateLog.objects.for_(job).order_by("timestamp", "pk").values_list("transition", flat=True)) == [
        "claim", "fail"
    ] * 3
    source = job.raw_package.copies.get(location=job.source_location)
    assert sha256(copy_file(source)) == job.raw_package.checksum


def test_demo_operator_retries_the_failed_archive_transfer_and_sees_it(var_dir, client):
    output = load_demo()
    password = re.search(r"^\s+operator\s+password (\S+)", output, flags=re.MULTILINE).group(1)
    job = LongTermArchiveTransfer.objects.get()
    assert client.login(request=HttpRequest(), username="operator", password=password)

    client.post(reverse("admin:staging_longtermarchivetransfer_transition", args=[job.pk, "retry"]))

    job.refresh_from_db()
    page = client.get(reverse("admin:staging_longtermarchivetransfer_change", args=[job.pk])).content.decode()
    assert (job.status, job.requires_intervention) == (JobStatus.PENDING, False)
    assert "retried by operator in the admin" in page
