"""The ``stage`` job kind: payload, sites, and applying a worker's report."""

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataFileCopy
from opsdb.registry import job_kinds
from opsdb.services import claim_next, job_claim, job_complete
from staging.choices import StagedPackageState
from staging.services import staging_job_create
from staging.work import StageHandler
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(topology, alice):
    return staging_job_create(owner=alice, raw_packages=topology.packages[:2],
                              destination_location=topology.cologne_processing)


def good_report(job) -> dict:
    """What a worker that staged every file correctly sends."""
    packages = []
    for item in job.items.exclude(state=StagedPackageState.REUSED).select_related("raw_package"):
        stem = item.raw_package.name.removesuffix(".tar")
        files = [{"relative_path": rf.relative_path, "path": f"staged/{stem}/{rf.relative_path}",
                  "checksum": rf.checksum} for rf in item.raw_package.files.all()]
        packages.append({"name": item.raw_package.name, "files": files})
    return {"packages": packages}


def complete(job, report):
    job = job_claim(job=job, worker="cologne-dtn-1")
    handler = StageHandler()
    return job_complete(job=job, lease_token=job.lease_token, apply=lambda j: handler.apply_result(j, report))


def test_stage_handler_is_registered():
    assert isinstance(job_kinds["stage"], StageHandler)


def test_payload_follows_the_protocol(job, topology):
    handler = StageHandler()
    package = sorted(topology.packages[:2], key=lambda p: p.name)[0]

    payload = handler.payload(handler.queryset().get(pk=job.pk))

    assert payload["staging_job"] == {"id": job.pk, "owner": "alice"}
    assert payload["destination"]["location"] == {
        "id": topology.cologne_processing.pk, "site": "cologne", "name": "processing",
        "location_type": "PROCESSING", "storage_type": "DISK",
        "base_path": topology.cologne_processing.base_path, "host": topology.cologne_processing.host,
    }
    first = payload["packages"][0]
    assert first["raw_package_id"] == package.pk
    assert first["name"] == package.name
    assert first["source"]["location"]["name"] == "archive"
    assert first["source"]["path"] == f"raw/{package.name}"
    assert first["destination_path"] == f"staged/{package.name.removesuffix('.tar')}"
    assert [x["relative_path"] for x in first["files"]] == ["scan-00.fits", "scan-01.fits"]
    assert set(first["files"][0]) == {"id", "relative_path", "size", "checksum", "checksum_algorithm"}
    assert len(payload["packages"]) == 2


def test_payload_leaves_out_reused_packages(topology, alice):
    staged = topology.packages[0]
    for raw_file in staged.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing)
    job = staging_job_create(owner=alice, raw_packages=topology.packages[:2],
                             destination_location=topology.cologne_processing)
    handler = StageHandler()

    payload = handler.payload(handler.queryset().get(pk=job.pk))

    assert [p["name"] for p in payload["packages"]] == [topology.packages[1].name]


def test_payload_query_count_does_not_grow_with_packages(topology, alice, django_assert_num_queries):
    handler = StageHandler()
    one = staging_job_create(owner=alice, raw_packages=topology.packages[:1],
                             destination_location=topology.cologne_processing)
    three = staging_job_create(owner=alice, raw_packages=topology.packages,
                               destination_location=topology.cologne_processing)

    for job in (one, three):
        with django_assert_num_queries(4):
            handler.payload(handler.queryset().get(pk=job.pk))


def test_at_sites_filters_by_destination_site(job, topology, alice):
    other = staging_job_create(owner=alice, raw_packages=topology.packages[:1],
                               destination_location=topology.cornell_processing)
    handler = StageHandler()

    cologne = handler.at_sites(handler.queryset(), [topology.cologne_processing.site_id])
    cornell = handler.at_sites(handler.queryset(), [topology.cornell_processing.site_id])

    assert list(cologne) == [job]
    assert list(cornell) == [other]
    assert handler.site_of(job) == topology.cologne_processing.site


def test_claim_next_through_handler_queryset(job):
    handler = StageHandler()

    claimed = claim_next(queryset=handler.queryset(), worker="w1")

    assert claimed.pk == job.pk
    assert claimed.status == JobStatus.ACTIVE


def test_apply_good_report_records_file_access_and_ready(job, topology, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job, changed = complete(job, good_report(job))

    job.refresh_from_db()
    copies = RawDataFileCopy.objects.filter(location=topology.cologne_processing)
    assert changed is True
    assert job.status == JobStatus.READY
    assert abs((job.expires_at - (timezone.now() + job.lifetime)).total_seconds()) < 60
    assert copies.count() == 4
    assert {c.status for c in copies} == {CopyStatus.PRESENT}
    assert {c.expires_at for c in copies} == {job.expires_at}
    name = topology.packages[0].name.removesuffix(".tar")
    assert copies.filter(path=f"staged/{name}/scan-00.fits").count() == 1
    items = list(job.items.all())
    assert {i.state for i in items} == {StagedPackageState.STAGED}
    assert [i.bytes_staged for i in items] == [i.raw_package.size for i in items]
    assert [m.subject for m in mail.outbox] == [f"Your staging request #{job.pk} is ready"]


def test_apply_report_without_paths_uses_protocol_paths(job, topology):
    report = good_report(job)
    for package in report["packages"]:
        for entry in package["files"]:
            del entry["path"]

    complete(job, report)

    name = topology.packages[0].name.removesuffix(".tar")
    assert RawDataFileCopy.objects.filter(path=f"staged/{name}/scan-01.fits").exists()


def test_apply_report_missing_file_is_refused_and_nothing_changes(job):
    report = good_report(job)
    dropped = report["packages"][0]["files"].pop()

    with pytest.raises(ValidationError) as refused:
        complete(job, report)

    job.refresh_from_db()
    assert refused.value.message_dict == {
        "packages": [f"Package {report['packages'][0]['name']}: file {dropped['relative_path']} is missing."]
    }
    assert job.status == JobStatus.ACTIVE
    assert RawDataFileCopy.objects.count() == 0
    assert set(job.items.values_list("state", flat=True)) == {StagedPackageState.PENDING}


def test_apply_report_bad_checksum_is_refused(job):
    report = good_report(job)
    report["packages"][1]["files"][0]["checksum"] = "0" * 63 + "f"

    with pytest.raises(ValidationError) as refused:
        complete(job, report)

    assert refused.value.message_dict["packages"] == [
        f"Package {report['packages'][1]['name']}: checksum mismatch for scan-00.fits."
    ]
    assert RawDataFileCopy.objects.count() == 0


def test_apply_report_missing_package_is_refused(job):
    report = good_report(job)
    missing = report["packages"].pop()["name"]

    with pytest.raises(ValidationError) as refused:
        complete(job, report)

    assert refused.value.message_dict == {"packages": [f"Package {missing} is missing from the report."]}


@pytest.mark.parametrize("report", [{}, {"packages": "x"}, {"packages": [{"name": "a", "files": "b"}]}])
def test_apply_malformed_report_is_refused(job, report):
    with pytest.raises(ValidationError) as refused:
        complete(job, report)

    assert list(refused.value.message_dict) == ["packages"]


def test_apply_report_absolute_path_is_refused(job):
    report = good_report(job)
    report["packages"][0]["files"][0]["path"] = "/etc/passwd"

    with pytest.raises(ValidationError):
        complete(job, report)

    assert RawDataFileCopy.objects.count() == 0


def test_apply_report_checksum_case_insensitive(job):
    report = good_report(job)
    for package in report["packages"]:
        for entry in package["files"]:
            entry["checksum"] = entry["checksum"].upper()

    job, changed = complete(job, report)

    assert changed is True


def test_apply_restaging_revives_deleted_file_records(job, topology):
    package = topology.packages[0]
    for raw_file in package.files.all():
        f.RawDataFileCopyFactory(raw_file=raw_file, location=topology.cologne_processing, status=CopyStatus.DELETED,
                                 path="old/path")

    complete(job, good_report(job))

    copies = RawDataFileCopy.objects.filter(raw_file__package=package, location=topology.cologne_processing)
    assert copies.count() == 2
    assert {c.status for c in copies} == {CopyStatus.PRESENT}
    assert "old/path" not in {c.path for c in copies}


def test_record_progress_marks_named_packages_staged(job, topology):
    handler = StageHandler()
    name = sorted(p.name for p in topology.packages[:2])[0]

    handler.record_progress(job, [name])

    assert dict(job.items.values_list("raw_package__name", "state")) == {
        name: StagedPackageState.STAGED,
        sorted(p.name for p in topology.packages[:2])[1]: StagedPackageState.PENDING,
    }


def test_apply_non_object_report_is_refused(job):
    with pytest.raises(ValidationError) as refused:
        complete(job, ["not", "an", "object"])

    assert list(refused.value.message_dict) == ["packages"]


def test_result_serializer_accepts_a_good_report_and_refuses_a_malformed_one(job):
    good = StageHandler.result_serializer(data=good_report(job))
    bad = StageHandler.result_serializer(data={"packages": [{"name": "x", "files": [{"path": "a"}]}]})

    assert good.is_valid(), good.errors
    assert not bad.is_valid()
    assert bad.errors["packages"][0]["files"][0].keys() == {"relative_path", "checksum"}
