"""The admin lists of transfers and staging: every filter choice they offer opens."""

from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.db import connection, transaction

from custody.models import DeletionJob
from opsdb.admin_errors import IndexedLastErrorFilter
from opsdb.choices import JobStatus
from staging.models import FixityCheck, LongTermArchiveTransfer, StagingJob
from tests import factories as f
from tests.opsdb.test_admin import ROW_MAKERS, admin_url, claimed_and_failed
from transfers.models import DataTransfer, DataTransferPackage, DataTransferUnpack

pytestmark = pytest.mark.django_db

LIST_APPS = ("transfers", "staging")
FILTERED_MODELS = sorted(
    (m for m, model_admin in admin.site._registry.items()
     if m._meta.app_label in LIST_APPS and model_admin.list_filter),
    key=lambda m: m._meta.label,
)


class FilterLinks(HTMLParser):
    """Every choice link of every list filter on a changelist: (filter title, query string)."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._title: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and "data-filter-title" in attrs:
            self._title = attrs["data-filter-title"]
        elif tag == "a" and self._title is not None:
            self.links.append((self._title, attrs.get("href", "")))

    def handle_endtag(self, tag):
        if tag == "details":
            self._title = None


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


@pytest.mark.parametrize("model", FILTERED_MODELS, ids=lambda m: m._meta.label)
def test_every_filter_choice_offered_opens(operator_client, model):
    ROW_MAKERS[model._meta.label]()
    url = admin_url(model, "changelist")
    links = FilterLinks()
    links.feed(operator_client.get(url).content.decode())

    refused = [(title, href) for title, href in links.links
               if operator_client.get(url + href).status_code != 200]

    assert links.links
    assert refused == []


@pytest.mark.parametrize("model, path", [
    (LongTermArchiveTransfer, "source_location"), (DataTransfer, "destination_location"),
    (DataTransferUnpack, "transfer__destination_location"),
], ids=["archive-transfers", "transfers", "unpacks"])
def test_site_filter_lists_the_jobs_at_that_site_locations(operator_client, model, path):
    jobs = [ROW_MAKERS[model._meta.label]() for _ in range(2)]
    here = [getattr_path(job, path).site_id for job in jobs]
    assert here[0] != here[1]

    at_first = operator_client.get(admin_url(model, "changelist"), {f"{path}__site__id__exact": here[0]})
    nowhere = operator_client.get(admin_url(model, "changelist"), {f"{path}__site__id__exact": 0})
    bad = operator_client.get(admin_url(model, "changelist"), {f"{path}__site__id__exact": "x"})

    assert [job.pk for job in at_first.context["cl"].result_list] == [jobs[0].pk]
    assert list(nowhere.context["cl"].result_list) == []
    assert (bad.status_code, bad.url.endswith("?e=1")) == (302, True)


def test_delete_jobs_filter_by_site(operator_client):
    site = f.SiteFactory()

    response = operator_client.get(admin_url(DeletionJob, "changelist"), {"location__site__id__exact": site.pk})

    assert response.status_code == 200
    assert site.name in response.content.decode()  # offered as a choice


def getattr_path(obj, path: str):
    for name in path.split("__"):
        obj = getattr(obj, name)
    return obj


def test_transfers_filtered_by_unpack_status(operator_client):
    pending = f.DataTransferUnpackFactory().transfer
    unpacked = f.DataTransferUnpackFactory()
    type(unpacked).objects.filter(pk=unpacked.pk).update(status=JobStatus.UNPACKED)

    response = operator_client.get(admin_url(DataTransfer, "changelist"), {"unpack__status__exact": "PENDING"})

    assert response.status_code == 200
    assert [t.pk for t in response.context["cl"].result_list] == [pending.pk]


ERROR = "bbcp: connection reset by peer"


def test_last_error_filter_lists_the_open_jobs_with_that_error(operator_client):
    failed = claimed_and_failed(f.LongTermArchiveTransferFactory(), error=ERROR)
    claimed_and_failed(f.LongTermArchiveTransferFactory(), error="disk full")
    done = claimed_and_failed(f.LongTermArchiveTransferFactory(), error=ERROR)
    LongTermArchiveTransfer.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED)  # out of attempts
    LongTermArchiveTransfer.objects.filter(pk=done.pk).update(status=JobStatus.COMPLETED)
    url = admin_url(LongTermArchiveTransfer, "changelist")

    page = operator_client.get(url)
    filtered = operator_client.get(url, {"last_error": ERROR})

    assert ERROR in [value for value, _ in next(
        spec for spec in page.context["cl"].filter_specs if isinstance(spec, IndexedLastErrorFilter)).lookup_choices]
    assert [job.pk for job in filtered.context["cl"].result_list] == [failed.pk]


def test_last_error_choices_are_the_commonest_errors_of_the_latest_failed_jobs(operator_client, monkeypatch):
    errors = ["old error", "disk full", "", "bbcp: reset", "disk full", "bbcp: reset", "disk full"]
    for error in errors:  # oldest first
        job = f.LongTermArchiveTransferFactory()
        LongTermArchiveTransfer.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, last_error=error)
    f.LongTermArchiveTransferFactory()  # pending, no error
    monkeypatch.setattr("opsdb.admin.ERROR_SAMPLE", len(errors) - 1)  # the oldest is out of the sample

    page = operator_client.get(admin_url(LongTermArchiveTransfer, "changelist"))

    spec = next(spec for spec in page.context["cl"].filter_specs if isinstance(spec, IndexedLastErrorFilter))
    assert spec.lookup_choices == [("disk full", "disk full (3)"), ("bbcp: reset", "bbcp: reset (2)")]


@pytest.mark.postgres
@pytest.mark.parametrize("model, index", [
    (LongTermArchiveTransfer, "archive_open_error"), (StagingJob, "staging_open_error"),
    (FixityCheck, "fixity_open_error"), (DataTransferPackage, "dtp_open_error"),
    (DataTransfer, "transfer_open_error"), (DataTransferUnpack, "unpack_open_error"),
    (DeletionJob, "deletionjob_open_error"),
], ids=lambda v: v if isinstance(v, str) else v._meta.label)
def test_last_error_filter_can_use_the_open_error_index(model, index):
    model_admin = admin.site._registry[model]
    spec = IndexedLastErrorFilter(None, {"last_error": [ERROR]}, model, model_admin)
    page = spec.queryset(None, model.objects.all()).order_by("-created_at", "-pk")[:100]

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: make the planner show the index
        plan = page.explain()

    assert IndexedLastErrorFilter in model_admin.get_list_filter(None)
    assert index in plan
