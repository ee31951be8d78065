"""Admin lists built for millions of rows: prefix search one table at a time, capped counts and
pages, EXISTS for to-many filters, fixed filter choices; on PostgreSQL, the indexes they need."""

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_fsm_log.models import StateLog

from opsdb.admin_tables import CappedCountPaginator
from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import DataTransferLog, RawDataFile, RawDataPackage, RawDataPackageCopy
from opsdb.services import job_claim
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from transfers.models import DataTransferPackageMember

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


def changelist(client, model, **params):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client.get(url, params)
    assert response.status_code == 200
    return response


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def test_package_search_matches_the_start_of_a_name_in_any_case(operator_client):
    wanted = f.RawDataPackageFactory(name="raw-orion-0001.tar")
    f.RawDataPackageFactory(name="raw-w43-0001.tar")

    by_start = changelist(operator_client, RawDataPackage, q="RAW-ORION")
    by_middle = changelist(operator_client, RawDataPackage, q="orion")

    assert listed(by_start) == [wanted]
    assert listed(by_middle) == []


def test_package_search_by_observation_id_lists_its_packages_once(operator_client):
    observation = f.ObservationFactory(obs_id="obs-2031-07")
    packages = [f.RawDataPackageFactory(observation=observation, name=f"raw-{n}.tar") for n in range(2)]
    f.RawDataPackageFactory(name="obs-2031-07-not-this-one.tar")

    response = changelist(operator_client, RawDataPackage, q="obs-2031-07")

    assert sorted(p.pk for p in listed(response)) == sorted(
        [*(p.pk for p in packages), RawDataPackage.objects.get(name__startswith="obs-").pk]
    )


def test_bundle_search_by_member_name_lists_the_bundle_once(operator_client):
    member = f.DataTransferPackageMemberFactory(raw_package__name="raw-cas-a-1.tar")
    f.DataTransferPackageMemberFactory(transfer_package=member.transfer_package, raw_package__name="raw-cas-a-2.tar")

    response = changelist(operator_client, member.transfer_package.__class__, q="raw-cas-a")

    assert listed(response) == [member.transfer_package]


def test_state_log_search_by_job_id_is_exact_and_text_is_not_a_number(operator_client):
    job = job_claim(job=f.DataTransferFactory(), worker="w")
    other = job_claim(job=f.DataTransferFactory(), worker="w")

    by_id = changelist(operator_client, StateLog, q=str(job.pk))
    by_text = changelist(operator_client, StateLog, q="abc")

    assert [log.object_id for log in listed(by_id)] == [job.pk]
    assert other.pk != job.pk
    assert listed(by_text) == []


def test_broad_search_on_own_columns_filters_the_page_query_and_lists_each_row_once(operator_client, monkeypatch):
    job = f.DataTransferFactory()
    lines = [f.DataTransferLogFactory(job=job, worker=f"dtn-{n}", message=f"dtn-{n} copied") for n in range(4)]
    f.DataTransferLogFactory(job=job, worker="other", message="copied")
    monkeypatch.setattr("opsdb.admin_tables.SEARCH_IDS_MAX", 2)  # 4 lines match both fields: broad

    with CaptureQueriesContext(connection) as queries:
        response = changelist(operator_client, DataTransferLog, q="DTN-")

    assert sorted(line.pk for line in listed(response)) == sorted(line.pk for line in lines)
    assert response.context["cl"].result_count == 4
    assert len([q for q in queries if "UNION" in q["sql"].upper()]) == 1  # the probe of the ids alone


def test_broad_search_across_a_relation_keeps_its_subquery_and_lists_each_row_once(operator_client, monkeypatch):
    packages = [f.RawDataPackageFactory(name=f"raw-broad-{n}.tar") for n in range(3)]
    files = [f.RawDataFileFactory(package=package, relative_path=f"raw-broad/{n}.fits")
             for n, package in enumerate(packages)]
    f.RawDataFileFactory(relative_path="elsewhere.fits")
    monkeypatch.setattr("opsdb.admin_tables.SEARCH_IDS_MAX", 2)

    response = changelist(operator_client, RawDataFile, q="raw-broad")

    assert sorted(row.pk for row in listed(response)) == sorted(row.pk for row in files)


def test_filtered_count_stops_at_the_cap_and_deep_pages_show_the_last_one(operator_client, monkeypatch):
    for n in range(4):
        f.DataTransferPackageMemberFactory(raw_package__name=f"raw-cap-{n}.tar")
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    monkeypatch.setattr(admin.site._registry[DataTransferPackageMember], "list_per_page", 1)

    response = changelist(operator_client, DataTransferPackageMember, q="raw-cap", p=50)

    cl = response.context["cl"]
    assert cl.paginator.capped is True
    assert (cl.paginator.num_pages, cl.page_num) == (2, 2)
    assert "2+ " in response.content.decode()
    assert "Only the first 2 pages are listed" in response.content.decode()


def test_unfiltered_small_table_is_counted_exactly(operator_client):
    for _ in range(3):
        f.RawDataPackageFactory()

    response = changelist(operator_client, RawDataPackage)

    assert response.context["cl"].result_count == 3
    assert response.context["cl"].paginator.estimated is False


def test_present_at_filter_lists_a_package_once_and_only_present_copies(operator_client):
    location = f.DataLocationFactory()
    here = f.RawDataPackageCopyFactory(location=location).raw_package
    f.RawDataPackageCopyFactory(raw_package=here)  # a second copy elsewhere: no duplicate row
    f.RawDataPackageCopyFactory(location=location, status=CopyStatus.DELETED)
    f.RawDataPackageCopyFactory()

    response = changelist(operator_client, RawDataPackage, present_at=location.pk)

    assert listed(response) == [here]


def test_state_log_filters_offer_fixed_choices_without_reading_the_table(operator_client):
    job_claim(job=f.DataTransferFactory(), worker="w")
    changelist(operator_client, StateLog)  # warm caches

    with CaptureQueriesContext(connection) as queries:
        response = changelist(operator_client, StateLog, transition="claim", state=JobStatus.ACTIVE)

    assert [log.transition for log in listed(response)] == ["claim"]
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]


def test_api_status_filter_has_no_distinct(operator_client):
    f.DataTransferFactory()

    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get("/api/v1/transfers/", {"status": [JobStatus.PENDING, JobStatus.FAILED]})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]


@pytest.mark.postgres
def test_large_unfiltered_table_shows_the_planner_estimate(operator_client, monkeypatch):
    for _ in range(3):
        f.RawDataPackageFactory()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE opsdb_rawdatapackage")
    monkeypatch.setattr("opsdb.admin_tables.EXACT_BELOW", 0)

    response = changelist(operator_client, RawDataPackage)

    assert response.context["cl"].paginator.estimated is True
    assert "about 3 raw data packages" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.parametrize("queryset, index", [
    (lambda: RawDataPackage.objects.filter(name__istartswith="raw-0001"), "rawpackage_name_upper"),
    (lambda: RawDataPackage.objects.filter(name__iexact="raw-0001.tar"), "rawpackage_name_upper"),
    (lambda: StateLog.objects.filter(timestamp__gte=datetime(2030, 1, 1, tzinfo=UTC)), "statelog_timestamp"),
    (lambda: DataTransferPackageMember.objects.filter(transfer_package__name__istartswith="dtp-1"),
     "dtp_name_upper"),
    (lambda: StateLog.objects.filter(transition="cancel").order_by("-pk")[:100], "statelog_transition_id"),
    (lambda: StateLog.objects.filter(state=JobStatus.PENDING).order_by("-pk")[:100], "statelog_state_id"),
    (lambda: DataTransferLog.objects.filter(level="DEBUG").order_by("-created_at", "-pk")[:100],
     "transferlog_level_time"),
], ids=["prefix", "exact", "statelog-time", "bundle-name", "statelog-transition", "statelog-state", "log-level"])
def test_admin_searches_can_use_their_index(queryset, index):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: make the planner show the index
        plan = queryset().explain()

    assert index in plan


def test_copies_by_site_and_location_type_list_the_copies_at_those_locations(operator_client, monkeypatch):
    here = f.RawDataPackageCopyFactory(location=f.DataLocationFactory(location_type=LocationType.BUFFER))
    f.RawDataPackageCopyFactory(location=f.DataLocationFactory(location_type=LocationType.LONG_TERM_ARCHIVE))
    monkeypatch.setattr(admin.site._registry[RawDataPackageCopy], "list_per_page", 1)  # pages: ids read first
    f.RawDataPackageCopyFactory(location=here.location)

    by_site = changelist(operator_client, RawDataPackageCopy, site=here.location.site_id)
    by_location = changelist(operator_client, RawDataPackageCopy, location__id__exact=here.location_id, p=2)
    by_type = changelist(operator_client, RawDataPackageCopy, location_type=LocationType.BUFFER)
    nowhere = changelist(operator_client, RawDataPackageCopy, location_type=LocationType.PROCESSING)
    bad_site = operator_client.get(reverse("admin:opsdb_rawdatapackagecopy_changelist"), {"site": "x"})

    assert by_site.context["cl"].result_count == 2
    assert [c.location_id for c in listed(by_site)] == [here.location_id]
    assert [c.pk for c in listed(by_location)] == [here.pk]  # newest first: the older copy on page 2
    assert by_type.context["cl"].result_count == 2
    assert listed(nowhere) == []
    assert (bad_site.status_code, bad_site.url.endswith("?e=1")) == (302, True)


def test_later_pages_list_the_rows_of_the_stock_slice_in_order(operator_client, monkeypatch):
    jobs = [f.LongTermArchiveTransferFactory() for _ in range(5)]
    monkeypatch.setattr(admin.site._registry[LongTermArchiveTransfer], "list_per_page", 2)
    newest_first = sorted(jobs, key=lambda job: (job.created_at, job.pk), reverse=True)

    pages, queries = [], []
    for n in (1, 2, 3):
        with CaptureQueriesContext(connection) as captured:
            pages.append(listed(changelist(operator_client, LongTermArchiveTransfer, p=n)))
        queries.append(len(captured))

    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    assert queries[1] == queries[2] == queries[0] + 1  # the page's ids, then its rows


def test_row_links_keep_the_list_filters_as_the_stock_links_do(operator_client):
    job = f.LongTermArchiveTransferFactory()
    LongTermArchiveTransfer.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    change = reverse("admin:staging_longtermarchivetransfer_change", args=[job.pk])

    filtered = changelist(operator_client, LongTermArchiveTransfer, status__exact=JobStatus.FAILED).content.decode()
    plain = changelist(operator_client, LongTermArchiveTransfer).content.decode()

    assert f'href="{change}?_changelist_filters=status__exact%3DFAILED"' in filtered
    assert f'href="{change}"' in plain


def test_row_checkbox_is_the_stock_one(operator_client):
    job = f.LongTermArchiveTransferFactory()
    model_admin = admin.site._registry[LongTermArchiveTransfer]

    assert model_admin.action_checkbox(job) == admin.ModelAdmin.action_checkbox(model_admin, job)
    assert str(model_admin.action_checkbox(job)).startswith('<input type="checkbox" name="_selected_action" ')


@pytest.mark.postgres
def test_postgres_connections_compile_no_plans_just_in_time():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")

        assert cursor.fetchone()[0] == "off"
