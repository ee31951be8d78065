"""Where is my data: the custody of a raw package in the selector, the API, the admin and ``manage.py custody``."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from opsdb.choices import CopyStatus, JobStatus
from opsdb.custody import human_duration, raw_package_custody
from opsdb.models import RawDataPackageCopy
from opsdb.registry import job_kinds
from tests import factories as f
from tests import topology as t
from tests.apiclient import operator_client, scientist_client, token_client, worker

pytestmark = pytest.mark.django_db

API = "/api/v1/raw-packages/{}/custody/"


@pytest.fixture
def sites():
    """ccat (buffer, no archive) → cologne and cornell (each with an archive): two required archives."""
    ccat, cologne, cornell = t.site("ccat", archive=False), t.site("cologne"), t.site("cornell")
    t.direct(ccat, cologne)
    t.direct(ccat, cornell)
    return ccat, cologne, cornell


def registered(location, *, hours_ago: float = 10):
    package = f.RawDataPackageFactory(name="obs-1.tar", checksum="ab" * 32)
    package.created_at = timezone.now() - timedelta(hours=hours_ago)
    package.save(update_fields=["created_at"])
    f.RawDataPackageCopyFactory(raw_package=package, location=location, path="raw/obs-1.tar")
    return package


def archived(package, location, *, hours_ago: float, checksum: str | None = None):
    copy = f.RawDataPackageCopyFactory(raw_package=package, location=location, path=f"raw/{package.name}",
                                       checksum_verified=checksum or package.checksum, verified_at=timezone.now())
    RawDataPackageCopy.objects.filter(pk=copy.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))
    return copy


def test_custody_not_safe_until_every_required_archive_holds_a_verified_copy(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer)
    archived(package, cologne.archive, hours_ago=6)

    custody = raw_package_custody(package)

    assert custody.required_archive_sites == ["cologne", "cornell"]
    assert custody.safe_archive_copies == 1
    assert custody.is_safe is False
    assert custody.time_to_safety is None
    assert custody.waiting_for == ["a verified copy in the archive at cornell"]


def test_custody_time_to_safety_runs_to_the_last_required_copy(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer, hours_ago=10)
    archived(package, cologne.archive, hours_ago=6)
    archived(package, cornell.archive, hours_ago=2)

    custody = raw_package_custody(package)

    assert custody.is_safe is True
    assert custody.safe_sites == ["cologne", "cornell"]
    assert round(custody.time_to_safety.total_seconds() / 3600) == 8


def test_custody_copy_with_another_checksum_or_not_present_is_not_safe(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer)
    archived(package, cologne.archive, hours_ago=6, checksum="cd" * 32)
    copy = archived(package, cornell.archive, hours_ago=6)
    RawDataPackageCopy.objects.filter(pk=copy.pk).update(status=CopyStatus.DELETED)

    custody = raw_package_custody(package)

    assert [c.safe for c in custody.copies] == [False, False, False]
    assert custody.safe_archive_copies == 0


def test_custody_min_copies_asks_for_more_sites_than_the_routes(sites, settings):
    ccat, cologne, cornell = sites
    settings.ARCHIVE_MIN_COPIES = 3
    package = registered(ccat.buffer)
    archived(package, cologne.archive, hours_ago=6)
    archived(package, cornell.archive, hours_ago=2)

    custody = raw_package_custody(package)

    assert custody.is_safe is False
    assert custody.waiting_for == ["1 more verified archive copy at another site (at least 3 sites)"]


def test_custody_required_archives_follow_relays_and_onward_routes():
    ccat, relay_site, far, onward = t.site("ccat", archive=False), t.site("hub"), t.site("far"), t.site("onward")
    t.relay(ccat, relay_site, far)  # the relay only forwards: its archive is not required
    t.direct(far, onward)  # far forwards what it unpacks
    t.site("elsewhere")
    package = registered(ccat.buffer)

    assert raw_package_custody(package).required_archive_sites == ["far", "onward"]


def test_custody_pending_work_lists_open_jobs_of_every_kind(sites):
    ccat, cologne, _ = sites
    package = registered(ccat.buffer)
    member = f.DataTransferPackageMemberFactory(raw_package=package, transfer_package__origin_location=ccat.buffer)
    transfer = f.DataTransferFactory(transfer_package=member.transfer_package, destination_location=cologne.buffer)
    f.DataTransferUnpackFactory(transfer=transfer)
    archive = f.LongTermArchiveTransferFactory(raw_package=package, source_location=cologne.buffer,
                                              destination_location=cologne.archive)
    f.StagingJobPackageFactory(raw_package=package)
    done = f.LongTermArchiveTransferFactory(raw_package=f.RawDataPackageFactory())  # another package's

    work = raw_package_custody(package).pending_work

    assert sorted(w.kind for w in work) == ["archive", "package", "stage", "transfer", "unpack"]
    assert done.pk not in [w.id for w in work if w.kind == "archive"]
    assert [w.site for w in work if w.kind == "archive"] == ["cologne"]
    assert archive.status == JobStatus.PENDING


def _busy_package(sites, copies: int):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer)
    for location in [cologne.archive, cornell.archive, cologne.buffer][: copies - 1]:
        archived(package, location, hours_ago=1)
    bundle = f.DataTransferPackageMemberFactory(raw_package=package,
                                                transfer_package__origin_location=ccat.buffer).transfer_package
    f.LongTermArchiveTransferFactory(raw_package=package, source_location=cologne.buffer,
                                     destination_location=cologne.archive)
    for _ in range(copies):
        f.DataTransferUnpackFactory(transfer__transfer_package=bundle)
        f.StagingJobPackageFactory(raw_package=package)
        f.RawDataFileCopyFactory(raw_file=f.RawDataFileFactory(package=package))
    return package


@pytest.mark.parametrize("copies", [1, 3])
def test_custody_query_count_is_constant(sites, copies, django_assert_num_queries):
    package = _busy_package(sites, copies)

    # copies, staged files, file count, locations, routes, site names, one per job kind
    with django_assert_num_queries(6 + len(job_kinds)):
        custody = raw_package_custody(package)

    assert len(custody.copies) == copies


def test_custody_api_for_a_scientist_hides_other_peoples_requests_and_operations(sites):
    ccat, cologne, _ = sites
    package = registered(ccat.buffer)
    archived(package, cologne.archive, hours_ago=2)
    f.LongTermArchiveTransferFactory(raw_package=package, source_location=cologne.buffer,
                                     destination_location=cologne.archive)
    f.StagingJobPackageFactory(raw_package=package, job__owner=f.UserFactory(username="someone"))

    body = scientist_client("sci").get(API.format(package.pk)).json()

    assert body["raw_package"]["name"] == "obs-1.tar"
    assert [c["location"] for c in body["copies"]] == ["ccat:buffer", "cologne:archive"]
    assert body["safe_archive_copies"] == 1
    assert body["required_archive_sites"] == ["cologne", "cornell"]
    assert body["is_safe"] is False
    assert body["pending_work"] == []  # archive transfers are operations; the staging job is someone else's


def test_custody_api_for_an_operator_lists_every_pending_job(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer, hours_ago=5)
    archived(package, cologne.archive, hours_ago=3)
    archived(package, cornell.archive, hours_ago=1)
    f.StagingJobPackageFactory(raw_package=package)

    body = operator_client().get(API.format(package.pk)).json()

    assert body["is_safe"] is True
    assert round(body["time_to_safety_seconds"] / 3600) == 4
    assert [w["kind"] for w in body["pending_work"]] == ["stage"]


def test_custody_api_scientist_sees_own_request(sites):
    ccat, _, _ = sites
    package = registered(ccat.buffer)
    user = f.scientist("sci2")
    f.StagingJobPackageFactory(raw_package=package, job__owner=user)
    f.StagingJobPackageFactory(raw_package=package)

    body = token_client(user).get(API.format(package.pk)).json()

    assert [w["kind"] for w in body["pending_work"]] == ["stage"]


def test_custody_api_restricted_worker_sees_jobs_at_its_sites(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer)
    f.LongTermArchiveTransferFactory(raw_package=package, source_location=cologne.buffer,
                                     destination_location=cologne.archive)
    f.LongTermArchiveTransferFactory(raw_package=package, source_location=cornell.buffer,
                                     destination_location=cornell.archive)

    body = token_client(worker("w-cornell", sites=[cornell.site])).get(API.format(package.pk)).json()

    assert [(w["kind"], w["site"]) for w in body["pending_work"]] == [("archive", "cornell")]


@pytest.mark.parametrize("pk", ["999999", "abc", "١"])
def test_custody_api_unknown_package_is_404(pk):
    assert operator_client().get(API.format(pk)).status_code == 404


def test_custody_api_anonymous_is_refused(sites):
    package = registered(sites[0].buffer)

    assert APIClient().get(API.format(package.pk)).status_code in (401, 403)


def test_custody_api_is_in_the_schema():
    body = operator_client().get("/api/v1/schema/?format=json").json()

    operation = body["paths"]["/api/v1/raw-packages/{id}/custody/"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert schema.endswith("/Custody")


@pytest.mark.parametrize("copies", [1, 3])
def test_custody_api_query_count_is_constant(sites, copies, django_assert_num_queries):
    package = _busy_package(sites, copies)
    client = operator_client()
    client.get(API.format(package.pk))  # the token lookup is cached after the first request

    # user perms, group perms, the package, custody (6 + one per kind), the package's own explanation
    # (locations, routes, its copies)
    with django_assert_num_queries(12 + len(job_kinds)):
        response = client.get(API.format(package.pk))

    assert response.status_code == 200


def test_custody_command_prints_copies_safety_and_work(sites):
    ccat, cologne, cornell = sites
    package = registered(ccat.buffer, hours_ago=10)
    archived(package, cologne.archive, hours_ago=6)
    archived(package, cornell.archive, hours_ago=2)
    f.StagingJobPackageFactory(raw_package=package)
    out = StringIO()

    call_command("custody", "obs-1.tar", stdout=out)

    text = out.getvalue()
    assert "Safe: 2 safe archive copies (cologne, cornell)" in text
    assert "8 h" in text
    assert "cologne:archive" in text and "raw/obs-1.tar" in text and package.checksum in text
    assert "stage #" in text


def test_custody_command_unknown_name_suggests_names_that_start_so(sites):
    registered(sites[0].buffer)

    with pytest.raises(CommandError, match="Names that start so: obs-1.tar"):
        call_command("custody", "obs-")
    with pytest.raises(CommandError, match="no name starts with it"):
        call_command("custody", "zzz")


def admin_client():
    client = Client()
    client.force_login(f.operator("op"))
    return client


def test_custody_admin_exact_name_opens_its_page(sites):
    ccat, cologne, _ = sites
    package = registered(ccat.buffer)
    archived(package, cologne.archive, hours_ago=1)
    client = admin_client()

    response = client.get("/admin/opsdb/rawdatapackage/custody/", {"q": "obs-1.tar"}, follow=True)

    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/admin/opsdb/rawdatapackage/{package.pk}/custody/"
    assert "Not safe yet (1 safe archive copy)" in html
    assert "cologne:archive" in html and package.checksum in html


def test_custody_admin_prefix_lists_matches(sites):
    for n in range(3):
        f.RawDataPackageFactory(name=f"night-{n}.tar")
    f.RawDataPackageFactory(name="day-1.tar")

    html = admin_client().get("/admin/opsdb/rawdatapackage/custody/", {"q": "NIGHT-"}).content.decode()

    assert html.count("/custody/\">night-") == 3
    assert "day-1.tar" not in html


def test_custody_admin_refuses_scientists_and_unknown_ids(sites):
    package = registered(sites[0].buffer)
    client = Client()
    client.force_login(f.scientist("sci"))

    assert client.get(f"/admin/opsdb/rawdatapackage/{package.pk}/custody/").status_code == 302
    assert admin_client().get("/admin/opsdb/rawdatapackage/424242/custody/").status_code == 404


@pytest.mark.parametrize("copies", [1, 3])
def test_custody_admin_page_query_count_is_constant(sites, copies, django_assert_num_queries):
    package = _busy_package(sites, copies)
    client = admin_client()

    # session, user, the package, custody (6 + one per kind), then the admin's own (permissions, navigation)
    with django_assert_num_queries(12 + len(job_kinds)):
        response = client.get(f"/admin/opsdb/rawdatapackage/{package.pk}/custody/")

    assert response.status_code == 200


def test_human_duration():
    assert human_duration(timedelta(days=3, hours=4, minutes=5)) == "3 d 4 h"
    assert human_duration(timedelta(seconds=40)) == "40 s"
