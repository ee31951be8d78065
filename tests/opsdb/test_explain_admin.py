"""The admin shows why each job waits: a list column computed for the page at once, and the change page."""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from custody.models import DeletionJob
from opsdb.admin import ExplainedChangeList, LeasedJobAdmin
from opsdb.admin_tables import CappedChangeList
from opsdb.explanation import clock
from opsdb.models import ApiToken, WorkerProfile
from opsdb.services import job_claim
from staging.models import FixityCheck, LongTermArchiveTransfer, StagingJob
from tests import factories as f
from tests import topology as t
from transfers.models import DataTransfer, DataTransferPackage, DataTransferUnpack
from transfers.services import route_pause

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def staging_job():
    return f.StagingJobPackageFactory().job


def deletion_job():
    return DeletionJob.objects.create(location=f.DataLocationFactory(), reason="safe at 2 archives", size=10)


def fixity_check():
    copy = f.RawDataPackageCopyFactory()
    return FixityCheck.objects.create(copy=copy, location=copy.location, size=10)


# model → a pending job (of a site no worker serves)
JOB_ADMINS = {
    DataTransferPackage: f.DataTransferPackageFactory,
    DataTransfer: f.DataTransferFactory,
    DataTransferUnpack: f.DataTransferUnpackFactory,
    LongTermArchiveTransfer: f.LongTermArchiveTransferFactory,
    StagingJob: staging_job,
    FixityCheck: fixity_check,
    DeletionJob: deletion_job,
}
# What the "why" column adds to a page of pending jobs: their sites, and the workers serving them.
EXPLAINED = 2


def changelist_queries(client, model) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_every_job_admin_is_pinned_here():
    assert {m for m, a in admin.site._registry.items() if isinstance(a, LeasedJobAdmin)} == set(JOB_ADMINS)


@pytest.mark.parametrize("model", list(JOB_ADMINS), ids=lambda m: m._meta.label)
def test_job_changelist_shows_why_with_a_fixed_number_of_queries(operator_client, model, monkeypatch):
    make = JOB_ADMINS[model]
    make()
    changelist_queries(operator_client, model)  # warm the content-type and permission caches
    one, page = changelist_queries(operator_client, model)
    make()
    make()

    three, page_three = changelist_queries(operator_client, model)
    monkeypatch.setattr(ExplainedChangeList, "get_results", CappedChangeList.get_results)
    monkeypatch.setattr(LeasedJobAdmin, "explanation_column", lambda self, obj: "-")
    without, _ = changelist_queries(operator_client, model)

    assert one == three == without + EXPLAINED
    assert page_three.count('class="job-explanation" data-code="no_worker"') == 3
    assert 'class="sortable column-explanation_column"' in page or 'class="column-explanation_column"' in page


def test_change_page_says_why_the_transfer_is_held(operator_client):
    ccat, cologne = t.site("ccat"), t.site("cologne")
    route = t.direct(ccat, cologne)
    transfer = f.DataTransferFactory(route=route, origin_location=ccat.buffer, destination_location=cologne.buffer,
                                     transfer_package__origin_location=ccat.buffer)
    route = route_pause(route=route, reason="maintenance of the link", by=f.operator("alice"))

    page = operator_client.get(admin_url(DataTransfer, "change", transfer.pk)).content.decode()

    assert 'data-code="route_paused"' in page
    assert f"route ccat → cologne was paused by alice at {clock(route.state_since)}: “maintenance of the link”" in page


def test_changelist_names_the_silent_worker_of_the_site(operator_client):
    cornell = t.site("cornell")
    user = f.worker_user("cornell-dtn-1")
    WorkerProfile.objects.create(user=user).sites.set([cornell.site])
    last = timezone.now() - timedelta(minutes=47)
    ApiToken.objects.create(user=user, prefix="opsdb_x", digest="d" * 64, last_used_at=last)
    f.LongTermArchiveTransferFactory(source_location=cornell.buffer, destination_location=cornell.archive)

    page = operator_client.get(admin_url(LongTermArchiveTransfer, "changelist")).content.decode()

    assert f"No worker serving cornell has been seen for 47 min (cornell-dtn-1 last seen {clock(last)})" in page


def test_active_job_change_page_says_who_does_it(operator_client):
    job = job_claim(job=f.DataTransferPackageFactory(), worker="ccat-dtn-1")

    page = operator_client.get(admin_url(DataTransferPackage, "change", job.pk)).content.decode()

    assert f"Being done by ccat-dtn-1 since {clock(job.claimed_at)}" in page
