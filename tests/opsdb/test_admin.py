"""The operator admin: every page renders, lists cost a fixed number of queries, only operators
get in, and retry/cancel go through the services with refusals shown as messages."""

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_fsm_log.models import StateLog

from opsdb.admin import LeasedJobAdmin
from opsdb.choices import JobStatus, LocationType
from opsdb.models import DataLocation, Site, WorkerProfile
from opsdb.services import job_claim, job_fail
from opsdb.tokens import api_token_create
from staging.models import FixityCheck, FixityHold, LongTermArchiveTransfer
from tests import factories as f
from transfers.choices import RouteType
from transfers.models import DataTransfer, DataTransferRoute

pytestmark = pytest.mark.django_db

DOMAIN_APPS = ("opsdb", "transfers", "staging", "django_fsm_log")
ADMIN_MODELS = sorted(
    (m for m in admin.site._registry if m._meta.app_label in DOMAIN_APPS), key=lambda m: m._meta.label
)


def claimed_and_failed(job, times: int = 1, error: str = "bbcp: connection reset"):
    for _ in range(times):
        job = job_claim(job=job, worker="ccat-dtn-1")
        job, _ = job_fail(job=job, lease_token=job.lease_token, error=error)
    return job


def make_staged_item():
    return f.StagingJobPackageFactory()


def make_worker_profile():
    profile = WorkerProfile.objects.create(user=f.UserFactory(groups=["workers"]))
    profile.sites.set([f.SiteFactory()])
    return profile


# One row of a registered model, built with every related row it needs.
ROW_MAKERS = {
    "opsdb.Site": f.SiteFactory,
    "opsdb.DataLocation": f.DataLocationFactory,
    "opsdb.Instrument": f.InstrumentFactory,
    "opsdb.Observation": f.ObservationFactory,
    "opsdb.RawDataPackage": lambda: f.RawDataPackageCopyFactory().raw_package,
    "opsdb.RawDataFile": f.RawDataFileFactory,
    "opsdb.RawDataPackageCopy": f.RawDataPackageCopyFactory,
    "opsdb.RawDataFileCopy": f.RawDataFileCopyFactory,
    "opsdb.WorkerProfile": make_worker_profile,
    "opsdb.ApiToken": lambda: api_token_create(user=make_worker_profile().user, name="dtn")[0],
    "transfers.DataTransferRoute": lambda: f.RouteFactory(
        route_type=RouteType.RELAY, relay_site=f.SiteFactory()
    ),
    "transfers.DataTransferPackage": lambda: f.DataTransferPackageMemberFactory().transfer_package,
    "transfers.DataTransferPackageMember": f.DataTransferPackageMemberFactory,
    "transfers.DataTransferPackageCopy": f.DataTransferPackageCopyFactory,
    "transfers.DataTransfer": lambda: f.DataTransferUnpackFactory().transfer,
    "transfers.DataTransferUnpack": f.DataTransferUnpackFactory,
    "opsdb.DataTransferLog": f.DataTransferLogFactory,
    "staging.LongTermArchiveTransfer": lambda: claimed_and_failed(f.LongTermArchiveTransferFactory()),
    "staging.StagingJob": lambda: make_staged_item().job,
    "staging.FixityCheck": lambda: claimed_and_failed(FixityCheck.objects.create(
        copy=f.RawDataPackageCopyFactory(), location=f.DataLocationFactory(), size=10)),
    "staging.FixityHold": lambda: FixityHold.objects.create(location=f.DataLocationFactory(), reason="2 of 10 failed",
                                                           checks=10, failures=2),
    "staging.StagingJobPackage": make_staged_item,
    "django_fsm_log.StateLog": lambda: StateLog.objects.get(
        object_id=job_claim(job=f.DataTransferFactory(), worker="w").pk, transition="claim"
    ),
}


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


def test_every_domain_model_is_registered():
    assert {m._meta.label for m in ADMIN_MODELS} == set(ROW_MAKERS)


def test_admin_index_shows_header_and_attention_for_operator(operator_client):
    claimed_and_failed(f.LongTermArchiveTransferFactory(), times=3)

    response = operator_client.get(reverse("admin:index"))

    content = response.content.decode()
    assert response.status_code == 200
    assert "ops-db operations" in content
    assert "Archive transfers waiting for an operator" in content
    assert "requires_intervention__exact=1" in content


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_changelist_and_change_page_render_for_operator(operator_client, model):
    obj = ROW_MAKERS[model._meta.label]()

    listing = operator_client.get(admin_url(model, "changelist"))
    change = operator_client.get(admin_url(model, "change", obj.pk))

    assert listing.status_code == 200
    assert change.status_code == 200
    assert listing.context["cl"].result_count == model.objects.count()


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_changelist_search_and_filters_render_for_operator(operator_client, model):
    ROW_MAKERS[model._meta.label]()
    model_admin = admin.site._registry[model]
    params = {"q": "x"} if model_admin.search_fields else {}
    fields = [f if isinstance(f, str) else f[0] for f in model_admin.list_filter if isinstance(f, str | tuple)]
    if "status" in fields:
        params["status__exact"] = JobStatus.FAILED

    response = operator_client.get(admin_url(model, "changelist"), params)

    assert response.status_code == 200


def changelist_queries(client, model, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"), params or {})
    assert response.status_code == 200
    return len(queries)


# With facets each filter shown costs its own count query, and a related-object filter is shown
# only once it has two choices: compare 3 and 5 rows there, where every such filter is shown.
@pytest.mark.parametrize("params, rows", [({}, (1, 3)), ({"_facets": "True"}, (3, 5))], ids=["plain", "facets"])
@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_changelist_query_count_does_not_grow_with_rows(operator_client, model, params, rows):
    make = ROW_MAKERS[model._meta.label]
    few, more = rows
    for _ in range(few):
        make()
    changelist_queries(operator_client, model, params)  # warm the content-type and permission caches
    with_few = changelist_queries(operator_client, model, params)
    for _ in range(more - few):
        make()

    with_more = changelist_queries(operator_client, model, params)

    assert model.objects.count() >= more
    assert with_more == with_few


@pytest.mark.parametrize("make_user", [f.scientist, f.worker_user], ids=["scientist", "worker"])
@pytest.mark.parametrize("url_name", ["admin:index", "admin:staging_longtermarchivetransfer_changelist"])
def test_admin_refuses_non_staff_accounts(client, make_user, url_name):
    client.force_login(make_user())

    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_admin_login_refuses_scientist_password(client):
    f.scientist()

    response = client.post(reverse("admin:login"), {"username": "scientist", "password": "correct-horse-battery"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


# --- retry and cancel ----------------------------------------------------------------------

@pytest.fixture
def failed_archive():
    job = claimed_and_failed(f.LongTermArchiveTransferFactory(), times=3)
    assert (job.status, job.requires_intervention) == (JobStatus.FAILED, True)
    return job


def assert_retried_by_operator(job, operator_client):
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.requires_intervention is False
    assert job.attempts == 0
    log = StateLog.objects.for_(job).order_by("-timestamp", "-pk").first()
    assert (log.transition, log.source_state, log.state, log.by.username) == (
        "retry", JobStatus.FAILED, JobStatus.PENDING, "operator"
    )
    page = operator_client.get(admin_url(LongTermArchiveTransfer, "change", job.pk)).content.decode()
    history = page[page.index("Transition history"):]
    assert history.index(">retry<") < history.index(">fail<")  # newest first


def test_retry_action_sends_failed_archive_transfer_back_to_pending(operator_client, failed_archive):
    response = operator_client.post(
        admin_url(LongTermArchiveTransfer, "changelist"),
        {"action": "retry_selected", "_selected_action": [failed_archive.pk]},
    )

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 job(s) retried."]
    assert_retried_by_operator(failed_archive, operator_client)


def test_retry_button_sends_failed_archive_transfer_back_to_pending(operator_client, failed_archive):
    change_url = admin_url(LongTermArchiveTransfer, "change", failed_archive.pk)
    page = operator_client.get(change_url).content.decode()
    retry_url = admin_url(LongTermArchiveTransfer, "transition", failed_archive.pk, "retry")
    assert f'action="{retry_url}"' in page

    response = operator_client.post(retry_url)

    assert response.status_code == 302
    assert response.url == change_url
    assert_retried_by_operator(failed_archive, operator_client)


def test_retry_button_on_pending_job_gives_message_not_error(operator_client):
    job = f.LongTermArchiveTransferFactory()

    response = operator_client.post(admin_url(LongTermArchiveTransfer, "transition", job.pk, "retry"), follow=True)

    job.refresh_from_db()
    assert response.status_code == 200
    assert job.status == JobStatus.PENDING
    assert [m.level_tag for m in response.context["messages"]] == ["warning"]
    assert "cannot be retried: it is pending" in response.content.decode()
    assert not StateLog.objects.for_(job).exists()


def test_retry_action_refuses_pending_and_retries_failed_in_one_batch(operator_client, failed_archive):
    pending = f.LongTermArchiveTransferFactory()

    response = operator_client.post(
        admin_url(LongTermArchiveTransfer, "changelist"),
        {"action": "retry_selected", "_selected_action": [failed_archive.pk, pending.pk]},
        follow=True,
    )

    failed_archive.refresh_from_db()
    untouched = LongTermArchiveTransfer.objects.get(pk=pending.pk)
    assert response.status_code == 200
    assert failed_archive.status == JobStatus.PENDING
    assert sorted(m.level_tag for m in response.context["messages"]) == ["success", "warning"]
    assert (untouched.status, untouched.attempts, untouched.updated_at) == (JobStatus.PENDING, 0, pending.updated_at)
    assert not StateLog.objects.for_(untouched).exists()


def test_cancel_button_cancels_pending_transfer(operator_client):
    transfer = f.DataTransferFactory()

    operator_client.post(admin_url(DataTransfer, "transition", transfer.pk, "cancel"))

    transfer.refresh_from_db()
    assert transfer.status == JobStatus.CANCELLED
    assert StateLog.objects.for_(transfer).get().by.username == "operator"


def test_cancel_action_on_active_transfer_is_refused_with_message(operator_client):
    transfer = job_claim(job=f.DataTransferFactory(), worker="ccat-dtn-1")

    response = operator_client.post(
        admin_url(DataTransfer, "changelist"),
        {"action": "cancel_selected", "_selected_action": [transfer.pk]}, follow=True,
    )

    transfer.refresh_from_db()
    assert response.status_code == 200
    assert transfer.status == JobStatus.ACTIVE
    assert "cannot be cancelled: it is active" in response.content.decode()


def test_transition_view_refuses_get_and_unknown_names(operator_client, failed_archive):
    url = admin_url(LongTermArchiveTransfer, "transition", failed_archive.pk, "retry")
    unknown = admin_url(LongTermArchiveTransfer, "transition", failed_archive.pk, "complete")

    assert operator_client.get(url).status_code == 405
    assert operator_client.post(unknown).status_code == 403
    failed_archive.refresh_from_db()
    assert failed_archive.status == JobStatus.FAILED


def test_transition_view_refuses_scientist(client, failed_archive):
    client.force_login(f.scientist())

    response = client.post(admin_url(LongTermArchiveTransfer, "transition", failed_archive.pk, "retry"))

    failed_archive.refresh_from_db()
    assert response.status_code == 302
    assert failed_archive.status == JobStatus.FAILED


def test_change_page_offers_only_allowed_transitions(operator_client):
    active = job_claim(job=f.DataTransferFactory(), worker="w")
    pending = f.DataTransferFactory()

    active_page = operator_client.get(admin_url(DataTransfer, "change", active.pk)).content.decode()
    pending_page = operator_client.get(admin_url(DataTransfer, "change", pending.pk)).content.decode()

    assert "No operator transition from this state." in active_page
    assert admin_url(DataTransfer, "transition", pending.pk, "cancel") in pending_page
    assert admin_url(DataTransfer, "transition", pending.pk, "retry") not in pending_page


def test_status_is_read_only_on_job_change_form(operator_client):
    job = f.DataTransferFactory()

    response = operator_client.get(admin_url(DataTransfer, "change", job.pk))

    form = response.context["adminform"].form
    assert "status" not in form.fields
    assert "lease_holder" not in form.fields
    assert "attempts" not in form.fields


def test_transfer_change_page_shows_unpack_state_logs_and_attempts(operator_client):
    transfer = f.DataTransferFactory()
    unpack = claimed_and_failed(f.DataTransferUnpackFactory(transfer=transfer), error="tar: unexpected EOF")
    claimed_and_failed(transfer, error="bbcp: timeout")

    page = operator_client.get(admin_url(DataTransfer, "change", transfer.pk)).content.decode()

    assert "Pending · 1 attempt(s) failed · last error: tar: unexpected EOF" in page
    assert admin_url(type(unpack), "change", unpack.pk) in page
    assert "attempt 1 failed (will retry): bbcp: timeout" in page
    assert "tar: unexpected EOF" not in page.split("Log entries")[1]  # the unpack's logs stay on its page


# --- routes and locations ------------------------------------------------------------------

def test_route_edit_in_admin_keeps_history(operator_client):
    route = f.RouteFactory()
    url = admin_url(DataTransferRoute, "change", route.pk)
    data = {**change_form_data(operator_client.get(url)), "route_type": RouteType.DIRECT, "method": "rsync",
            "max_concurrent": 2}

    response = operator_client.post(url, data)

    assert response.status_code == 302
    latest = route.history.first()
    assert (latest.method, latest.max_concurrent, latest.history_user.username) == ("rsync", 2, "operator")
    history_page = operator_client.get(admin_url(DataTransferRoute, "history", route.pk))
    assert history_page.status_code == 200
    assert "rsync" in history_page.content.decode()


def test_location_edit_in_admin_keeps_history(operator_client):
    location = f.DataLocationFactory(location_type=LocationType.BUFFER)
    data = {
        "site": location.site_id, "name": location.name, "location_type": LocationType.BUFFER,
        "storage_type": location.storage_type, "base_path": "/data/new", "host": location.host,
        "capacity_bytes": "", "priority": 5, "active": "on", "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00", "deletion_policy": "WHEN_SAFE", "high_watermark_percent": 80,
        "low_watermark_percent": 70, "deletion_enabled": "on", "deletion_paused_reason": "",
    }

    response = operator_client.post(admin_url(DataLocation, "change", location.pk), data)

    assert response.status_code == 302
    latest = location.history.first()
    assert (latest.base_path, latest.priority, latest.history_user.username) == ("/data/new", 5, "operator")


def test_site_history_page_renders(operator_client):
    site = Site.objects.create(name="cologne")

    response = operator_client.get(admin_url(Site, "history", site.pk))

    assert response.status_code == 200


# --- editing a job's own fields ----------------------------------------------------------------

def change_form_data(response) -> dict:
    """The POST body the change page would send unchanged: main form and every inline's management form."""
    form = response.context["adminform"].form
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for i, row in enumerate(formset.initial_forms):
            data[f"{formset.prefix}-{i}-{row._meta.model._meta.pk.name}"] = row.instance.pk
    return {k: "" if v is None else v for k, v in data.items()}


def test_operator_edits_priority_of_job_with_history(operator_client):
    transfer = claimed_and_failed(f.DataTransferFactory())
    url = admin_url(DataTransfer, "change", transfer.pk)
    data = {**change_form_data(operator_client.get(url)), "priority": 7}

    response = operator_client.post(url, data)

    transfer.refresh_from_db()
    assert response.status_code == 302
    assert (transfer.priority, transfer.status, transfer.attempts) == (7, JobStatus.PENDING, 1)


def test_job_edit_keeps_status_a_worker_changed_meanwhile(operator_client):
    transfer = f.DataTransferFactory()
    url = admin_url(DataTransfer, "change", transfer.pk)
    data = {**change_form_data(operator_client.get(url)), "priority": 7}
    job_claim(job=transfer, worker="ccat-dtn-1")  # a worker claims it while the page is open

    response = operator_client.post(url, data)

    transfer.refresh_from_db()
    assert response.status_code == 302
    assert (transfer.priority, transfer.status) == (7, JobStatus.ACTIVE)


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_add_page_renders_or_is_refused_for_operator(operator_client, model):
    response = operator_client.get(admin_url(model, "add"))

    expected = 200 if admin.site._registry[model].has_add_permission(response.wsgi_request) else 403
    assert response.status_code == expected


def test_concurrent_transition_is_reported_as_message(operator_client, failed_archive, monkeypatch):
    from django_fsm import ConcurrentTransition

    from opsdb import admin as opsdb_admin

    def lost_race(*, job, by, reason):
        raise ConcurrentTransition("the row changed meanwhile")

    monkeypatch.setitem(opsdb_admin.TRANSITIONS, "retry", (lost_race, "retried", (JobStatus.FAILED,)))

    response = operator_client.post(
        admin_url(LongTermArchiveTransfer, "transition", failed_archive.pk, "retry"), follow=True
    )

    assert response.status_code == 200
    assert "cannot be retried: it is failed (the row changed meanwhile)" in response.content.decode()


@pytest.mark.parametrize("model", [m for m in ADMIN_MODELS if issubclass(admin.site._registry[m].__class__,
                                                                        LeasedJobAdmin)],
                         ids=lambda m: m._meta.label)
def test_job_admins_neither_add_nor_delete(operator_client, model):
    job = ROW_MAKERS[model._meta.label]()

    add = operator_client.get(admin_url(model, "add"))
    delete = operator_client.post(admin_url(model, "delete", job.pk), {"post": "yes"})
    listing = operator_client.get(admin_url(model, "changelist")).content.decode()
    page = operator_client.get(admin_url(model, "change", job.pk)).content.decode()

    assert (add.status_code, delete.status_code) == (403, 403)
    assert model.objects.filter(pk=job.pk).exists()
    assert "delete_selected" not in listing and admin_url(model, "add") not in listing
    assert "Save and add another" not in page and admin_url(model, "delete", job.pk) not in page


def test_transfer_package_page_samples_members_and_links_the_full_list(operator_client):
    from transfers.admin import DataTransferPackageAdmin
    from transfers.models import DataTransferPackage, DataTransferPackageMember

    package = f.DataTransferPackageFactory()
    for _ in range(DataTransferPackageAdmin.member_sample + 2):
        f.DataTransferPackageMemberFactory(transfer_package=package)
    f.DataTransferPackageMemberFactory()  # another bundle's member

    page = operator_client.get(admin_url(DataTransferPackage, "change", package.pk)).content.decode()
    members = operator_client.get(admin_url(DataTransferPackageMember, "changelist"), {"transfer_package": package.pk})

    assert f"{DataTransferPackageAdmin.member_sample + 2} raw package(s):" in page
    assert f'{admin_url(DataTransferPackageMember, "changelist")}?transfer_package={package.pk}' in page
    assert members.context["cl"].result_count == DataTransferPackageAdmin.member_sample + 2


def test_transition_view_on_unknown_or_malformed_id_is_404(operator_client):
    for object_id in ("999999", "not-a-number"):
        url = admin_url(LongTermArchiveTransfer, "changelist") + f"{object_id}/transition/retry/"

        assert operator_client.post(url).status_code == 404


def test_retry_action_summarises_many_refusals_in_one_message(operator_client):
    jobs = [f.LongTermArchiveTransferFactory() for _ in range(7)]

    response = operator_client.post(
        admin_url(LongTermArchiveTransfer, "changelist"),
        {"action": "retry_selected", "_selected_action": [j.pk for j in jobs]}, follow=True,
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("7 job(s) refused: ")
    assert message.endswith("; and 2 more.")
    assert message.count("cannot be retried: it is pending") == 5


def test_transfer_keeps_what_it_was_created_with_on_the_change_form(operator_client):
    transfer = f.DataTransferFactory()

    change_form = operator_client.get(admin_url(DataTransfer, "change", transfer.pk)).context["adminform"].form

    assert sorted(change_form.fields) == ["priority"]


def test_job_edit_racing_a_worker_is_refused_with_message(operator_client, monkeypatch):
    from opsdb.admin import LeasedJobAdmin

    transfer = f.DataTransferFactory()
    url = admin_url(DataTransfer, "change", transfer.pk)
    data = {**change_form_data(operator_client.get(url)), "priority": 7}
    save_model = LeasedJobAdmin.save_model

    def worker_claims_first(self, request, obj, form, change):
        job_claim(job=DataTransfer.objects.get(pk=obj.pk), worker="ccat-dtn-1")  # between load and save
        save_model(self, request, obj, form, change)

    monkeypatch.setattr(LeasedJobAdmin, "save_model", worker_claims_first)

    response = operator_client.post(url, data, follow=True)

    transfer.refresh_from_db()
    assert response.status_code == 200
    assert "The job changed state while you were editing it; nothing was saved." in response.content.decode()
    assert transfer.priority == 0  # (the simulated claim shares the request's transaction, so it is rolled back too)
