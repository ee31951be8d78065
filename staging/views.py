"""The scientists' pages: find data, request staging, follow requests."""

from functools import wraps
from math import ceil

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_fsm import TransitionNotAllowed

from opsdb.choices import OPEN_STATUSES, JobStatus
from opsdb.explain import attach_explanations
from opsdb.models import RawDataPackage
from opsdb.numbers import parse_id
from opsdb.roles import can_stage, is_operator
from staging import selectors
from staging.explain import job_status_words, plain_error
from staging.forms import SearchForm, StagingRequestForm
from staging.selection import Selection, SelectionFull
from staging.services import (
    staging_job_cancel,
    staging_job_check,
    staging_job_create,
    staging_job_extend,
    staging_job_release,
    staging_lifetime,
)

PAGE_SIZE = 25
FIND_COUNT_CAP = 1000
UNDER_WAY = (JobStatus.PENDING, JobStatus.ACTIVE)


def refresh_seconds() -> int:
    """How often pages with work under way reload themselves."""
    return settings.STAGING_PAGE_REFRESH_SECONDS



def scientist_required(view):
    """Signed-in scientists and operators only; anyone else signed in gets 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not can_stage(request.user):
            raise PermissionDenied("Only scientists and operators can use these pages.")
        return view(request, *args, **kwargs)

    return wrapper


class CappedPaginator(Paginator):
    """Counts at most ``cap`` + 1 matching packages and offers pages up to the ``cap``-th.

    A search matching much of a million packages is narrowed, not paged through; counting all of
    them would cost more than the page itself.
    """

    cap = FIND_COUNT_CAP

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @cached_property
    def capped(self) -> bool:
        return self.count > self.cap

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, ceil(self.cap / self.per_page))


def catalogue() -> QuerySet[RawDataPackage]:
    return (
        RawDataPackage.objects.select_related("observation__instrument")
        .prefetch_related(selectors.archive_copies_prefetch())
        .order_by("-observation__start_time", "observation__obs_id", "name")
    )


@scientist_required
def find_data(request: HttpRequest) -> HttpResponse:
    # No criteria is a valid search: the newest observations first, so the page is never empty.
    form = SearchForm(request.GET)
    results = form.filter(catalogue())
    page = CappedPaginator(results, PAGE_SIZE).get_page(request.GET.get("page"))
    selection = Selection(request.session)
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "staging/find.html", {
        "form": form, "page": page, "selection": selection,
        "selected_ids": set(selection.ids), "query": query.urlencode(),
        "total": page.paginator.count, "more": page.paginator.capped, "cap": page.paginator.cap,
        "limit": Selection.limit(),
        "selection_summary": _selection_summary(selection),
    })


def _selection_summary(selection: Selection) -> dict:
    sizes = list(selection.packages().values_list("size", flat=True))
    return {"count": len(sizes), "size": sum(sizes)}


@require_POST
@scientist_required
def change_selection(request: HttpRequest) -> HttpResponse:
    selection = Selection(request.session)
    action = request.POST.get("action", "")
    try:
        if request.POST.get("observation"):
            ids = RawDataPackage.objects.filter(observation_id=_int(request.POST["observation"]))
            added = selection.add(ids.values_list("pk", flat=True))
            messages.success(request, f"Added the whole observation: {added} new package(s).")
        elif action == "add":
            ticked = _ints(request.POST.getlist("package"))
            ids = RawDataPackage.objects.filter(pk__in=ticked)
            if not ticked:
                messages.warning(request, "Nothing was added: tick the packages you want first.")
            else:
                added = selection.add(ids.values_list("pk", flat=True))
                messages.success(request, f"Added {added} package(s) to your selection.")
        elif action == "all":
            _add_all_results(request, selection)
        elif action == "remove":
            removed = selection.remove(_ints(request.POST.getlist("package")))
            messages.info(request, f"Removed {removed} package(s) from your selection.")
        elif action == "clear":
            selection.clear()
            messages.info(request, "Your selection is empty now.")
        else:
            messages.error(request, "Nothing was changed: unknown action.")
    except SelectionFull as full:
        messages.error(request, str(full))
    return redirect(_next_url(request))


def _add_all_results(request: HttpRequest, selection: Selection) -> None:
    form = SearchForm(QueryDict(request.POST.get("query", "")))
    if not form.is_valid():
        messages.error(request, "Search first, then add its results.")
        return
    results = form.filter(RawDataPackage.objects.all())
    ids = list(results.order_by("pk").values_list("pk", flat=True)[: Selection.limit() + 1])  # no more than can be held
    if len(ids) > Selection.limit():
        raise SelectionFull(f"This search has more than the {Selection.limit()} results a request can hold. "
                            "Narrow it (instrument, target, dates) or add packages one by one.")
    added = selection.add(ids)
    messages.success(request, f"Added all {len(ids)} result(s) of the search: {added} new package(s).")


def _int(value: str) -> int | None:
    """A database id in ASCII digits, or None for anything else (see ``opsdb.numbers``)."""
    return parse_id(value)


def _ints(values: list[str]) -> list[int]:
    return [i for i in (_int(v) for v in values) if i is not None]


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("staging:find")


@scientist_required
def request_staging(request: HttpRequest) -> HttpResponse:
    """GET: the form; POST step=preview: the plan; POST step=confirm: create the request."""
    selection = Selection(request.session)
    packages = list(selection.packages().select_related("observation").order_by("name"))
    form = StagingRequestForm(request.POST if request.method == "POST" else None)  # an empty POST is bound too
    plan = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        kwargs = {"raw_packages": packages, "destination_location": data["destination_location"],
                  "lifetime": staging_lifetime(data["lifetime_days"])}
        try:
            if request.POST.get("step") == "confirm":
                job = staging_job_create(owner=request.user, note=data["note"], **kwargs)
                selection.clear()
                messages.success(request, f"Your request #{job.pk} was created.")
                return redirect("staging:request-detail", pk=job.pk)
            plan = staging_job_check(**kwargs)
        except ValidationError as refused:
            form.add_service_errors(refused)
    elif request.method == "POST" and not packages:
        form.add_error(None, "Select at least one package to stage.")
    return render(request, "staging/request_form.html", {
        "form": form, "packages": packages, "plan": plan, "selection_size": sum(p.size for p in packages),
    })


@scientist_required
def request_list(request: HttpRequest) -> HttpResponse:
    jobs = selectors.with_progress(selectors.staging_jobs_visible_to(request.user)).order_by("-created_at", "-pk")
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = attach_explanations(page.object_list)  # for the page at once
    under_way = any(job.status in UNDER_WAY for job in page)
    return render(request, "staging/request_list.html", {
        "page": page, "refresh": refresh_seconds() if under_way else None,
        "show_owner": is_operator(request.user),
    })


def _visible_job(request: HttpRequest, pk: int):
    return get_object_or_404(selectors.with_progress(selectors.staging_jobs_visible_to(request.user)), pk=pk)


@scientist_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_job(request, pk)
    attach_explanations([job])
    items = selectors.job_items(job)
    paths = selectors.staged_file_paths(job)
    for item in items:
        item.paths = paths.get(item.raw_package_id, [])
    logs = list(job.logs.order_by("-created_at")[:20])
    for log in logs:
        log.plain = plain_error(log.message) if log.level in ("ERROR", "WARNING") else ""
    return render(request, "staging/request_detail.html", {
        "job": job, "items": items, "logs": logs, "status_words": job_status_words(job),
        "error_words": plain_error(job.last_error), "all_paths": [p for item in items for p in item.paths],
        "refresh": refresh_seconds() if job.status in UNDER_WAY else None,
        "can_cancel": job.status in (JobStatus.PENDING, JobStatus.FAILED),
        "is_open": job.status in OPEN_STATUSES, "max_attempts": job.max_attempts(),
        "can_keep": _can_keep(job), "days_left_to_add": settings.STAGING_MAX_LIFETIME_DAYS - job.lifetime.days,
        "max_lifetime_days": settings.STAGING_MAX_LIFETIME_DAYS,
        "releasing": job.status == JobStatus.READY and not job.cleaned_at and job.expires_at is not None
        and job.expires_at <= timezone.now(),
    })


def _can_keep(job) -> bool:
    """Ready data that is still there: it may be kept longer or released early."""
    return (job.status == JobStatus.READY and job.cleaned_at is None
            and (job.expires_at is None or job.expires_at > timezone.now()))


@require_POST
@scientist_required
def request_extend(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_job(request, pk)
    days = _int(request.POST.get("days", ""))
    try:
        job = staging_job_extend(job=job, days=days or 0, by=request.user)
        messages.success(request, f"Request #{job.pk} is kept until {job.expires_at:%Y-%m-%d %H:%M} UTC.")
    except ValidationError as refused:
        messages.error(request, " ".join(refused.messages))
    except TransitionNotAllowed as refused:
        messages.error(request, str(refused))
    return redirect("staging:request-detail", pk=job.pk)


@require_POST
@scientist_required
def request_release(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_job(request, pk)
    try:
        staging_job_release(job=job, by=request.user)
        messages.success(request, f"Request #{job.pk} was released: its staged files are being removed.")
    except TransitionNotAllowed as refused:
        messages.error(request, str(refused))
    return redirect("staging:request-detail", pk=job.pk)


@require_POST
@scientist_required
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_job(request, pk)
    try:
        staging_job_cancel(job=job, by=request.user)
        messages.success(request, f"Request #{job.pk} was cancelled.")
    except TransitionNotAllowed as refused:
        messages.error(request, str(refused))
    return redirect("staging:request-detail", pk=job.pk)
