"""Ingest: a raw package with its observation, files and archive location in one idempotent request."""

import pytest

from opsdb.models import Instrument, Observation, RawDataFile, RawDataPackage, RawDataPackageCopy
from tests import factories as f
from tests.apiclient import scientist_client, worker_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/ingest/raw-packages/"


@pytest.fixture
def buffer():
    return f.DataLocationFactory(site=f.SiteFactory(name="ccat"), name="buffer")


def body(**changes):
    data = {
        "name": "raw-1.tar", "size": 30, "checksum": "AB" * 32,
        "observation": {"obs_id": "obs-1", "instrument": "Prime-Cam", "target_name": "Orion-KL",
                        "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-01T01:00:00Z"},
        "files": [{"relative_path": "scan-1.fits", "size": 10, "checksum": "01" * 32},
                  {"relative_path": "scan-2.fits", "size": 20, "checksum": "02" * 32, "checksum_algorithm": "md5"}],
        "location": {"site": "ccat", "name": "buffer"}, "path": "raw/raw-1.tar",
    }
    data.update(changes)
    return data


def test_ingest_registers_package_observation_files_and_copy(buffer):
    response = worker_client().post(URL, body(), format="json")

    package = RawDataPackage.objects.get()
    assert response.status_code == 201
    assert response.json()["id"] == package.pk
    assert [f["relative_path"] for f in response.json()["files"]] == ["scan-1.fits", "scan-2.fits"]
    assert package.checksum == "ab" * 32
    assert package.observation.instrument.name == "Prime-Cam"
    assert list(package.files.values_list("relative_path", "checksum_algorithm")) == [
        ("scan-1.fits", "sha256"), ("scan-2.fits", "md5")]
    copy = RawDataPackageCopy.objects.get()
    assert (copy.location, copy.path) == (buffer, "raw/raw-1.tar")


def test_ingest_same_package_twice_is_one_package(buffer):
    client = worker_client()

    first = client.post(URL, body(), format="json")
    second = client.post(URL, body(), format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    counts = RawDataPackage.objects.count(), RawDataFile.objects.count(), RawDataPackageCopy.objects.count()
    assert counts == (1, 2, 1)


def test_ingest_same_name_other_checksum_is_409_and_nothing_changes(buffer):
    client = worker_client()
    client.post(URL, body(), format="json")

    response = client.post(URL, body(checksum="cd" * 32), format="json")

    assert response.status_code == 409
    assert "another checksum" in response.json()["detail"]
    assert RawDataPackage.objects.get().checksum == "ab" * 32


def test_ingest_into_existing_observation(buffer):
    observation = f.ObservationFactory(obs_id="obs-1", instrument=f.InstrumentFactory(name="Prime-Cam"))

    response = worker_client().post(URL, body(observation={"obs_id": "obs-1"}), format="json")

    assert response.status_code == 201
    assert RawDataPackage.objects.get().observation == observation
    assert Observation.objects.count() == 1


def test_ingest_existing_observation_with_another_instrument_is_409(buffer):
    f.ObservationFactory(obs_id="obs-1", instrument=f.InstrumentFactory(name="CHAI"))

    response = worker_client().post(URL, body(), format="json")

    assert response.status_code == 409
    assert not RawDataPackage.objects.exists()


def test_ingest_by_location_id(buffer):
    data = body(location_id=buffer.pk)
    del data["location"]

    response = worker_client().post(URL, data, format="json")

    assert response.status_code == 201
    copy = RawDataPackageCopy.objects.get()
    assert (copy.location_id, copy.raw_package.name, copy.path) == (buffer.pk, "raw-1.tar", "raw/raw-1.tar")


def test_ingest_defaults_the_path(buffer):
    data = body()
    del data["path"]

    worker_client().post(URL, data, format="json")

    assert RawDataPackageCopy.objects.get().path == "raw/raw-1.tar"


@pytest.mark.parametrize(("changes", "field"), [
    ({"observation": {"obs_id": "new-obs"}}, "observation"),
    ({"observation": {"obs_id": "o", "instrument": "I", "target_name": "t", "start_time": "2026-11-02T00:00:00Z",
                      "end_time": "2026-11-01T00:00:00Z"}}, "observation"),
    ({"location": {"site": "ccat", "name": "nowhere"}}, "location"),
    ({"location": None}, "location"),
    ({"location_id": 1}, "location"),
    ({"size": -1}, "size"),
    ({"checksum": "not hex"}, "checksum"),
    ({"files": [{"relative_path": "a", "size": 1, "checksum": "00"}] * 2}, "files"),
    ({"files": [{"relative_path": "../a", "size": 1, "checksum": "00"}]}, "files"),
    ({"files": "scan-1.fits"}, "files"),
    ({"path": "/abs/path"}, "path"),
    ({"name": "x" * 300}, "name"),
    ({"checksum_algorithm": "crc"}, "checksum_algorithm"),
])
def test_ingest_malformed_is_400_and_nothing_registered(buffer, changes, field):
    response = worker_client().post(URL, body(**changes), format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert (RawDataPackage.objects.count(), Observation.objects.count(), Instrument.objects.count()) == (0, 0, 0)


def test_ingest_at_inactive_location_is_400(buffer):
    buffer.active = False
    buffer.save()

    response = worker_client().post(URL, body(), format="json")

    assert response.status_code == 400
    assert "not active" in response.json()["location"][0]


def test_ingest_by_scientist_is_403(buffer):
    assert scientist_client().post(URL, body(), format="json").status_code == 403
    assert not RawDataPackage.objects.exists()


@pytest.mark.parametrize("by_id", [False, True])
def test_ingest_by_worker_restricted_to_another_site_is_403_and_nothing_registered(buffer, by_id):
    cologne = f.SiteFactory(name="cologne")
    archive = f.DataLocationFactory(site=cologne, name="archive")
    data = body(location={"site": "cologne", "name": "archive"})
    if by_id:
        del data["location"]
        data["location_id"] = archive.pk

    response = worker_client("rt-ccat", sites=[buffer.site]).post(URL, data, format="json")

    assert response.status_code == 403
    assert "cologne" in response.json()["detail"]
    assert (RawDataPackage.objects.count(), RawDataPackageCopy.objects.count()) == (0, 0)


def test_ingest_existing_package_at_another_site_by_restricted_worker_adds_no_copy(buffer):
    f.DataLocationFactory(site=f.SiteFactory(name="cologne"), name="archive")
    assert worker_client().post(URL, body(), format="json").status_code == 201

    response = worker_client("rt-ccat", sites=[buffer.site]).post(
        URL, body(location={"site": "cologne", "name": "archive"}), format="json")

    assert response.status_code == 403
    assert list(RawDataPackageCopy.objects.values_list("location", flat=True)) == [buffer.pk]


def test_ingest_by_worker_restricted_to_the_location_site_is_201(buffer):
    response = worker_client("rt-ccat", sites=[buffer.site]).post(URL, body(), format="json")

    assert response.status_code == 201


@pytest.mark.parametrize("name", ["../../evil.tar", "a/b.tar", "..", ".", ".hidden.tar", "-rf.tar", "raw 1.tar",
                                  "raw\u00001.tar", "raw\n1.tar", "ra\\w.tar", "rαw.tar", ""])
def test_ingest_unsafe_package_name_is_400_and_nothing_registered(buffer, name):
    response = worker_client().post(URL, body(name=name), format="json")

    assert response.status_code == 400, response.content
    assert "name" in response.json()
    assert not RawDataPackage.objects.exists()


@pytest.mark.parametrize("path", ["../a", "a/../../b", "/abs", "a//b", "a/", "./a", "a/./b", "-x", "a/-x",
                                  "a\u0000b", "a\nb", "a\\..\\b", ""])
@pytest.mark.parametrize("field", ["path", "file"])
def test_ingest_unsafe_path_is_400_and_nothing_registered(buffer, path, field):
    if field == "file":
        data = body(files=[{"relative_path": path, "size": 1, "checksum": "00"}])
    else:
        data = body(path=path)

    response = worker_client().post(URL, data, format="json")

    assert response.status_code == 400, response.content
    assert ("files" if field == "file" else "path") in response.json()
    assert not RawDataPackage.objects.exists()


def test_ingest_safe_names_and_nested_paths_are_accepted(buffer):
    data = body(name="PCAM_obs-0001+x.tar.gz", path="raw/2026/PCAM_obs-0001+x.tar.gz",
                files=[{"relative_path": "det_1/scan.001.fits", "size": 1, "checksum": "00"}])

    response = worker_client().post(URL, data, format="json")

    assert response.status_code == 201, response.content
