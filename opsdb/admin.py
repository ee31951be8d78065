"""The operator admin for sites, locations and the raw data catalogue, and the shared job admin.

Every changelist fetches what its columns and filters show up front, so it costs the same
number of queries for 1 row as for 100. Job statuses change only through ``opsdb.services``.
"""

from collections import Counter

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.admin import GenericTabularInline
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Count, Exists, OuterRef, Prefetch
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from django_fsm_log.models import StateLog
from rangefilter.filters import DateRangeQuickSelectListFilterBuilder
from simple_history.admin import SimpleHistoryAdmin

from opsdb.admin_tables import CappedChangeList, LargeTableAdmin, rows_by_ids
from opsdb.choices import CopyStatus, DeletionPolicy, JobStatus, LocationType
from opsdb.custody import raw_package_custody, safety_summary
from opsdb.explain import attach_explanations, attach_raw_package_explanations, explanation_of
from opsdb.explanation import Explanation, age, clock
from opsdb.log_links import log_link_html
from opsdb.models import (
    DataLocation,
    DataTransferLog,
    Instrument,
    Observation,
    PhysicalCopy,
    RawDataFile,
    RawDataFileCopy,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
)
from opsdb.registry import job_kinds
from opsdb.services import job_cancel, job_retry

admin.site.site_header = "ops-db operations"
admin.site.site_title = "ops-db"
admin.site.index_title = "Operations"
admin.site.index_template = "admin/opsdb_index.html"

LOCATION_RELATED = ("site",)
ROUTE_RELATED = (
    "origin_site", "destination_site", "relay_site", "origin_location__site", "destination_location__site",
)


# --- list filters whose choices come from one query -------------------------------------------

class SelectRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A related-object filter whose choice labels need related rows, fetched in the same query."""

    related: tuple[str, ...] = ()

    def field_choices(self, field, request, model_admin):
        queryset = field.related_model._default_manager.select_related(*self.related)
        return [(obj.pk, str(obj)) for obj in queryset]


class LocationListFilter(SelectRelatedFieldListFilter):
    related = LOCATION_RELATED


class FixedChoicesFilter(admin.SimpleListFilter):
    """A filter on one column whose choices are known in advance (no SELECT DISTINCT over the table)."""

    field = ""

    def choices_list(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return self.choices_list()

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field: self.value()})


class PresentAtLocationFilter(admin.SimpleListFilter):
    """Raw packages with a PRESENT copy at a location: EXISTS per row, no join that repeats rows."""

    title = "present at"
    parameter_name = "present_at"

    def lookups(self, request, model_admin):
        return [(loc.pk, str(loc)) for loc in DataLocation.objects.select_related(*LOCATION_RELATED)]

    def queryset(self, request, queryset):
        if not (self.value() or "").isdigit():
            return queryset
        copies = RawDataPackageCopy.objects.filter(
            raw_package=OuterRef("pk"), location_id=int(self.value()), status=CopyStatus.PRESENT
        )
        return queryset.filter(Exists(copies))


def site_id(value: str) -> int:
    """A site filter's value as an id; anything else is the admin's "bad filter" (a redirect, not a 500)."""
    if not value.isdigit() or len(value) > 18:
        raise IncorrectLookupParameters(f"not a site id: {value!r}")
    return int(value)


def site_of_location_filter(location_path: str, title: str = "site") -> type[admin.SimpleListFilter]:
    """A filter by the site of the location at ``location_path`` (``source_location``,
    ``transfer__destination_location``), under the parameter the stock related filter used
    (``<path>__site__id__exact``: links from the dashboard keep working).

    The site's locations are read first (a handful of rows) and the jobs filtered by location id,
    which an index serves: joined to the location table, PostgreSQL hash-joined every job to find
    that a site had none (archive transfers from ccat at 10^6: 290 ms of scan and 240 ms of JIT).
    """

    class SiteFilter(admin.SimpleListFilter):
        parameter_name = f"{location_path}__site__id__exact"

        def lookups(self, request, model_admin):
            return [(str(site.pk), site.name) for site in Site.objects.order_by("name")]

        def queryset(self, request, queryset):
            if self.value() is None:
                return queryset
            locations = DataLocation.objects.filter(site_id=site_id(self.value())).values_list("pk", flat=True)
            return queryset.filter(**{f"{location_path}_id__in": list(locations)})

    SiteFilter.title = title
    SiteFilter.__name__ = f"SiteOf_{location_path}"
    return SiteFilter


class RouteListFilter(SelectRelatedFieldListFilter):
    related = ROUTE_RELATED


def admin_link(obj, label: str | None = None) -> str:
    """A link to ``obj``'s change page (or its label alone when it has none)."""
    if obj is None:
        return "-"
    meta = obj._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(label or obj)
    return format_html('<a href="{}">{}</a>', url, label or obj)


def generic_link(content_type, object_id) -> str:
    """A link to a generic relation's target without fetching it (its label would cost queries)."""
    label = f"{content_type.model} #{object_id}"
    try:
        url = reverse(f"admin:{content_type.app_label}_{content_type.model}_change", args=[object_id])
    except NoReverseMatch:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} PB"


class KeepSavedObjectHeadingMixin:
    """After a failed save, the heading and breadcrumb name the object as saved, not the refused edit.

    The form validated its values onto the instance, so without this the page titled itself with
    a name that was never stored, as if the save had gone through.
    """

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = getattr(context.get("adminform"), "form", None)
        if change and obj is not None and form is not None and form.errors:
            saved = type(obj)._default_manager.filter(pk=obj.pk).first()
            if saved is not None:
                context["original"] = saved
                context["subtitle"] = str(saved)
                obj = saved
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- transition history and job admin shared by every leased job ------------------------------

def exact_time(value) -> str:
    """Seconds matter when reading a job's history; the admin's default format drops them."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


class ReadOnlyInlineMixin:
    """An inline that only shows rows: nothing added, changed or deleted from here."""

    extra = 0
    can_delete = False
    classes = ["opsdb-compact"]

    class Media:
        css = {"all": ["opsdb/admin.css"]}

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TransitionHistoryInline(ReadOnlyInlineMixin, GenericTabularInline):
    """Every state change of the job, newest first: from, to, when, by whom, why."""

    model = StateLog
    verbose_name = "transition"
    verbose_name_plural = "transition history (newest first)"
    fields = ("when", "transition", "source_state", "state", "by", "description")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("by").order_by("-timestamp", "-pk")

    @admin.display(description="when")
    def when(self, obj):
        return exact_time(obj.timestamp)


class DataTransferLogInline(ReadOnlyInlineMixin, GenericTabularInline):
    """A job's short log lines, newest first; the detail is in the file at log_path."""

    model = DataTransferLog
    ct_field = "content_type"
    ct_fk_field = "object_id"
    fields = ("when", "level", "attempt", "worker", "message", "log_file")
    readonly_fields = fields
    verbose_name = "log entry"
    verbose_name_plural = "log entries (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("content_type").order_by("-created_at", "-pk")

    @admin.display(description="when")
    def when(self, obj):
        return exact_time(obj.created_at)

    @admin.display(description="log file")
    def log_file(self, obj):
        return log_line_link(obj)


JOB_READONLY_FIELDS = (
    "status", "attempts", "attempts_total", "next_attempt_at", "lease_holder", "lease_user", "lease_expires_at",
    "claimed_at", "heartbeat_at", "bytes_done", "resume_bytes", "resumed_from", "last_error", "log_file",
    "finished_at", "created_at", "updated_at",
)

REFUSALS_SHOWN = 5
# name → (service, past tense, states it is allowed from)
TRANSITIONS = {
    "retry": (job_retry, "retried", (JobStatus.FAILED,)),
    "cancel": (job_cancel, "cancelled", (JobStatus.PENDING, JobStatus.FAILED)),
}


def titled(filter_class: type[admin.FieldListFilter], title: str) -> type[admin.FieldListFilter]:
    """``filter_class`` under its own heading (two site filters must not both read "By site")."""

    def __init__(self, *args, **kwargs):
        filter_class.__init__(self, *args, **kwargs)
        self.title = title  # the field filter sets its title from the field's name in __init__

    return type(f"{filter_class.__name__}_{title.replace(' ', '_')}", (filter_class,), {"__init__": __init__})


def job_status_filter(done: str, field: str = "status", title: str = "status") -> type[admin.SimpleListFilter]:
    """A status filter that offers only the states this kind of job can take (one "done" state)."""
    states = [s for s in JobStatus if s in (JobStatus.PENDING, JobStatus.ACTIVE, done, JobStatus.FAILED,
                                            JobStatus.CANCELLED)]

    class StatusFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__exact"  # the parameter the field's own filter used: links keep working

        def lookups(self, request, model_admin):
            return [(s.value, s.label) for s in states]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    StatusFilter.title = title
    return StatusFilter


ERROR_CHOICES_SHOWN = 10
ERROR_SAMPLE = 1000  # the latest failed jobs whose errors are offered as choices


class LastErrorListFilter(admin.SimpleListFilter):
    """Open jobs (pending or failed) by their last error; the choices are the commonest errors of the
    latest failed jobs (a bounded sample via the status index, never a DISTINCT over the whole table)."""

    title = "last error (open jobs)"
    parameter_name = "last_error"

    def lookups(self, request, model_admin):
        """The errors of the latest failed jobs, read in one walk of the (status, id) index and counted
        here: grouped in SQL, PostgreSQL read every failed job's row to join them to the sample
        (archive transfers at 10^6: 12 ms warm, 260 ms cold, on every job list's page; now <1 ms)."""
        latest = model_admin.model.objects.failed().order_by("-pk").values_list("last_error", flat=True)
        counts = Counter(error for error in latest[:ERROR_SAMPLE] if error)
        commonest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:ERROR_CHOICES_SHOWN]
        return [(error, f"{shorten(error, 60)} ({n})") for error, n in commonest]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(status__in=(JobStatus.PENDING, JobStatus.FAILED), last_error=self.value())


def shorten(text: str, length: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


class ExplainedChangeList(CappedChangeList):
    """A job changelist whose rows carry their explanations, computed for the page at once."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = attach_explanations(self.result_list)


def explanation_html(explanation: Explanation, *, now=None):
    """The explanation's sentence, its code and since when (a tooltip with the exact time)."""
    since = ""
    if explanation.since is not None:
        since = format_html(' <small class="quiet" title="{}">since {} ({})</small>', exact_time(explanation.since),
                            clock(explanation.since, now), age(explanation.since, now))
    return format_html('<span class="job-explanation" data-code="{}">{}</span>{}', explanation.code,
                       explanation.message, since)


class LeasedJobAdmin(LargeTableAdmin):
    """Admin for a leased job: state read-only, retry/cancel as actions and buttons via the services.

    Jobs are made by the scheduler (and the API) and changed by transitions: the admin neither
    adds nor deletes them.
    """

    change_form_template = "admin/opsdb/leased_job_change_form.html"
    readonly_fields = JOB_READONLY_FIELDS
    job_state_fields: tuple[str, ...] = JOB_READONLY_FIELDS  # shown together, read-only
    # What the job was created with (where from, where to, how): fixed once it exists, like its history.
    created_with: tuple[str, ...] = ()
    actions = ("retry_selected", "cancel_selected")
    # A job row (status, why, error, lease, times) costs ~1 ms to render: 50 rows keep a filtered
    # page near the cost of a nearly empty one.
    list_per_page = 50
    inlines = (TransitionHistoryInline, DataTransferLogInline)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_changelist(self, request, **kwargs):
        return ExplainedChangeList

    def get_list_display(self, request):
        """The "why" column right after the status."""
        columns = [c for c in super().get_list_display(request) if c != "explanation_column"]
        at = columns.index("status") + 1 if "status" in columns else len(columns)
        return [*columns[:at], "explanation_column", *columns[at:]]

    @admin.display(description="why")
    def explanation_column(self, obj):
        return explanation_html(explanation_of(obj))

    def get_list_filter(self, request):
        """The kind's own status choices in place of the plain status filter, and the last-error filter."""
        filters = [job_status_filter(self.model.DONE) if f == "status" else f
                   for f in super().get_list_filter(request)]
        return [*filters, LastErrorListFilter]

    @admin.display(description="attempts", ordering="attempts_total")
    def attempts_column(self, obj):
        """Failed attempts since the last retry, and in all when an operator retried it."""
        if obj.attempts_total == obj.attempts:
            return obj.attempts
        return format_html("{} <small>({} in all)</small>", obj.attempts, obj.attempts_total)

    @admin.display(description="last error", ordering="last_error")
    def error_column(self, obj):
        if not obj.last_error:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.last_error, shorten(obj.last_error, 80))

    # -- transitions ------------------------------------------------------------------------
    def apply_transition(self, request, job, name: str) -> str | None:
        """Apply ``name`` to ``job`` through its service; returns why it was refused, or None."""
        service, done, _ = TRANSITIONS[name]
        try:
            service(job=job, by=request.user, reason=f"{done} by {request.user} in the admin")
        except (TransitionNotAllowed, ConcurrentTransition) as exc:
            job.refresh_from_db()
            return f"{job} cannot be {done}: it is {job.get_status_display().lower()} ({exc})"
        return None

    def _run_bulk(self, request, queryset, name: str) -> None:
        """One summary message per outcome, however many jobs were selected."""
        done = TRANSITIONS[name][1]
        jobs = list(queryset.order_by("pk"))
        refusals = [reason for job in jobs if (reason := self.apply_transition(request, job, name))]
        if len(jobs) > len(refusals):
            self.message_user(request, f"{len(jobs) - len(refusals)} job(s) {done}.", messages.SUCCESS)
        if refusals:
            shown = "; ".join(refusals[:REFUSALS_SHOWN])
            more = f"; and {len(refusals) - REFUSALS_SHOWN} more" if len(refusals) > REFUSALS_SHOWN else ""
            self.message_user(request, f"{len(refusals)} job(s) refused: {shown}{more}.", messages.WARNING)

    @admin.action(description="Retry the selected failed jobs", permissions=["change"])
    def retry_selected(self, request, queryset):
        self._run_bulk(request, queryset, "retry")

    @admin.action(description="Cancel the selected pending or failed jobs", permissions=["change"])
    def cancel_selected(self, request, queryset):
        self._run_bulk(request, queryset, "cancel")

    def get_urls(self):
        meta = self.model._meta
        urls = [
            path(
                "<path:object_id>/transition/<str:name>/",
                self.admin_site.admin_view(self.transition_view),
                name=f"{meta.app_label}_{meta.model_name}_transition",
            )
        ]
        return urls + super().get_urls()

    def transition_view(self, request, object_id, name):
        """POST target of the change page's buttons."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id!r}.")
        if name not in TRANSITIONS or not self.has_change_permission(request, job):
            raise PermissionDenied
        refusal = self.apply_transition(request, job, name)
        if refusal:
            self.message_user(request, f"{refusal}.", messages.WARNING)
        else:
            job.refresh_from_db()
            self.message_user(
                request, f"{job} {TRANSITIONS[name][1]}: now {job.get_status_display().lower()}.", messages.SUCCESS
            )
        meta = self.model._meta
        return HttpResponseRedirect(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[job.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["job_explanation"] = explanation_html(explanation_of(obj))
        if obj is not None and self.has_change_permission(request, obj):
            meta = self.model._meta
            context["job_transitions"] = [
                (name, name.capitalize(),
                 reverse(f"admin:{meta.app_label}_{meta.model_name}_transition", args=[obj.pk, name]))
                for name, (_, _, sources) in TRANSITIONS.items() if obj.status in sources
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, *self.created_with) if obj is not None else fields

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A worker may move the job between loading and saving the form: the save then finds
        # another status and ConcurrentTransitionMixin refuses it (rolled back, nothing saved).
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ConcurrentTransition:
            self.message_user(
                request, "The job changed state while you were editing it; nothing was saved. "
                "Here is its current state.", messages.WARNING,
            )
            return HttpResponseRedirect(request.path)

    def get_fieldsets(self, request, obj=None):
        order = {f.name: i for i, f in enumerate(self.model._meta.get_fields())}
        own = sorted((f for f in self.get_fields(request, obj) if f not in self.job_state_fields),
                     key=lambda name: order.get(name, len(order)))  # model order; computed fields last
        state = ("Job state (changes only through transitions)", {"fields": self.job_state_fields})
        return [(None, {"fields": own}), state]

    def get_exclude(self, request, obj=None):
        """The log path is shown by ``log_file`` (a link or text to copy), never edited."""
        return (*(super().get_exclude(request, obj) or ()), "log_path")

    @admin.display(description="log file (last attempt)")
    def log_file(self, obj):
        """A link when LOG_URL_TEMPLATE is set, else the path as text to copy; ops-db never opens it."""
        return log_link_html(obj.log_path, kind=self.model.KIND, id=obj.pk, worker=obj.lease_holder)

    @admin.display(description="lease expires", ordering="lease_expires_at")
    def lease_column(self, obj):
        if obj.status != JobStatus.ACTIVE:
            return "-"
        return format_html("{}<br><small>{}</small>", obj.lease_expires_at, obj.lease_holder)


# --- sites and locations -------------------------------------------------------------------

class DataLocationInline(admin.TabularInline):
    model = DataLocation
    fields = ("name", "location_type", "storage_type", "base_path", "host", "priority", "active")
    extra = 0
    show_change_link = True


@admin.register(Site)
class SiteAdmin(KeepSavedObjectHeadingMixin, SimpleHistoryAdmin):
    list_display = ("name", "title", "location_count", "created_at")
    search_fields = ("name", "title")
    inlines = (DataLocationInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_locations=Count("locations"))

    @admin.display(description="locations", ordering="n_locations")
    def location_count(self, obj):
        return obj.n_locations


@admin.register(DataLocation)
class DataLocationAdmin(KeepSavedObjectHeadingMixin, SimpleHistoryAdmin):
    list_display = (
        "__str__", "site", "location_type", "storage_type", "base_path", "host", "priority", "active",
        "deletion_policy", "deletion_state",
    )
    list_display_links = ("__str__",)
    list_filter = ("site", "location_type", "storage_type", "active", "deletion_policy", "deletion_enabled")
    readonly_fields = ("deletion_paused_at",)
    actions = ("resume_deletion", "switch_deletion_off", "switch_deletion_on")

    @admin.display(description="deletion")
    def deletion_state(self, obj):
        if not obj.deletion_enabled:
            return "switched off"
        if obj.deletion_paused_reason:
            return format_html('<strong style="color: var(--error-fg);">paused</strong>: {}',
                               obj.deletion_paused_reason)
        return "on" if obj.deletion_policy != DeletionPolicy.NEVER else "-"

    @admin.action(description="Resume deletion at the selected locations (after a pause on failures)")
    def resume_deletion(self, request, queryset):
        count = queryset.exclude(deletion_paused_reason="").update(
            deletion_paused_reason="", deletion_paused_at=None, deletion_failures_recent=0)
        self.message_user(request, f"Deletion resumed at {count} location(s).", messages.SUCCESS)

    @admin.action(description="Switch deletion off at the selected locations")
    def switch_deletion_off(self, request, queryset):
        for location in queryset:
            location.deletion_enabled = False
            location.save(update_fields=["deletion_enabled"])
        self.message_user(request, "Deletion switched off: nothing there is scheduled for deletion nor deleted.",
                          messages.SUCCESS)

    @admin.action(description="Switch deletion on at the selected locations")
    def switch_deletion_on(self, request, queryset):
        for location in queryset:
            location.deletion_enabled = True
            location.save(update_fields=["deletion_enabled"])
        self.message_user(request, "Deletion switched on.", messages.SUCCESS)
    search_fields = ("name", "site__name", "base_path", "host")
    autocomplete_fields = ("site",)
    list_select_related = LOCATION_RELATED

    def get_queryset(self, request):
        # Also serves the autocomplete of every location field: its labels read the site.
        return super().get_queryset(request).select_related(*LOCATION_RELATED)


# --- the catalogue -------------------------------------------------------------------------

@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)


class RawDataPackageInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = RawDataPackage
    fields = ("package", "size", "checksum", "created_at")
    readonly_fields = fields

    @admin.display(description="package")
    def package(self, obj):
        return admin_link(obj)


@admin.register(Observation)
class ObservationAdmin(LargeTableAdmin):
    list_display = ("obs_id", "instrument", "target_name", "start_time", "end_time")
    list_filter = ("instrument", ("start_time", DateRangeQuickSelectListFilterBuilder(title="observed")))
    search_fields = ("^obs_id", "^target_name")
    search_help_text = "Observation id or target name, or how either begins (not case-sensitive)."
    autocomplete_fields = ("instrument",)
    list_select_related = ("instrument",)
    inlines = (RawDataPackageInline,)


class RawDataFileInline(admin.TabularInline):
    model = RawDataFile
    fields = ("relative_path", "size", "checksum", "checksum_algorithm")
    extra = 0
    show_change_link = True


class RawDataPackageCopyInline(admin.TabularInline):
    model = RawDataPackageCopy
    fields = ("location", "status", "path", "checksum_verified", "verified_at")
    readonly_fields = ("status",)  # changed only by the copy's transitions (opsdb.copies)
    autocomplete_fields = ("location",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location__site")


def present_locations(copies) -> str:
    names = [str(c.location) for c in copies if c.status == CopyStatus.PRESENT]
    return ", ".join(names) or "-"


CUSTODY_MATCHES = 20


class RawPackageChangeList(CappedChangeList):
    """Raw packages with why those in no bundle yet wait, computed for the page at once."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = attach_raw_package_explanations(self.result_list)


@admin.register(RawDataPackage)
class RawDataPackageAdmin(LargeTableAdmin):
    list_display = ("name", "observation", "target", "size_display", "present_at", "waiting", "created_at",
                    "custody_link")
    list_filter = ("observation__instrument", PresentAtLocationFilter)
    search_fields = ("^name", "^observation__obs_id")
    search_help_text = "Package name or observation id, or how either begins (not case-sensitive)."
    autocomplete_fields = ("observation",)
    list_select_related = ("observation",)
    inlines = (RawDataFileInline, RawDataPackageCopyInline)

    def get_queryset(self, request):
        copies = RawDataPackageCopy.objects.select_related("location__site")
        return super().get_queryset(request).prefetch_related(Prefetch("copies", queryset=copies))

    @admin.display(description="target", ordering="observation__target_name")
    def target(self, obj):
        return obj.observation.target_name

    @admin.display(description="size", ordering="size")
    def size_display(self, obj):
        return human_size(obj.size)

    @admin.display(description="present at")
    def present_at(self, obj):
        return present_locations(obj.copies.all())

    def get_changelist(self, request, **kwargs):
        return RawPackageChangeList

    @admin.display(description="waiting for a bundle")
    def waiting(self, obj):
        explanation = getattr(obj, "explanation", None)
        return explanation_html(explanation) if explanation else "-"

    @admin.display(description="custody")
    def custody_link(self, obj):
        url = reverse("admin:opsdb_rawdatapackage_custody", args=[obj.pk])
        return format_html('<a href="{}">where is it?</a>', url)

    def get_urls(self):
        urls = [
            path("custody/", self.admin_site.admin_view(self.custody_search_view),
                 name="opsdb_rawdatapackage_custody_search"),
            path("<path:object_id>/custody/", self.admin_site.admin_view(self.custody_view),
                 name="opsdb_rawdatapackage_custody"),
        ]
        return urls + super().get_urls()

    def custody_search_view(self, request):
        """Find a package by name: an exact name opens its custody page, a prefix lists the first matches."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        term = request.GET.get("q", "").strip()[:255]
        matches, exact = [], None
        if term:
            exact = RawDataPackage.objects.filter(name=term).values_list("pk", flat=True).first()
            if exact is not None:
                return HttpResponseRedirect(reverse("admin:opsdb_rawdatapackage_custody", args=[exact]))
            matches = list(RawDataPackage.objects.filter(name__istartswith=term).order_by("name")
                           .values("pk", "name", "created_at")[: CUSTODY_MATCHES + 1])
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Where is my data?",
            "term": term, "matches": matches[:CUSTODY_MATCHES], "more": len(matches) > CUSTODY_MATCHES,
        }
        return TemplateResponse(request, "admin/opsdb/rawdatapackage/custody_search.html", context)

    def custody_view(self, request, object_id):
        """Every copy of one package, how safe it is, and the work pending on it."""
        package = self.get_object(request, unquote(object_id))
        if package is None or not self.has_view_permission(request, package):
            raise Http404(f"No raw data package with id {object_id!r}.")
        custody = raw_package_custody(package)
        work = [(w, reverse(f"admin:{job_kinds[w.kind].model._meta.app_label}_"
                            f"{job_kinds[w.kind].model._meta.model_name}_change", args=[w.id]))
                for w in custody.pending_work]
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": package,
            "title": f"Where is {package.name}?", "custody": custody, "summary": safety_summary(custody),
            "work": work,
        }
        return TemplateResponse(request, "admin/opsdb/rawdatapackage/custody.html", context)


@admin.register(RawDataFile)
class RawDataFileAdmin(LargeTableAdmin):
    list_display = ("relative_path", "package", "size", "checksum_algorithm", "checksum")
    list_filter = ("checksum_algorithm",)
    search_fields = ("^package__name", "^relative_path")
    search_help_text = "Package name or file path, or how either begins (not case-sensitive)."
    autocomplete_fields = ("package",)
    list_select_related = ("package",)


class CopyLocationsFilter(admin.SimpleListFilter):
    """Copies at the locations of a site, or of a location type: the locations are read first (a
    handful of rows) and the copies filtered by ``location_id``, which the (location, id) index serves
    newest first. Joined to the location table instead, PostgreSQL walked every copy from the newest
    looking for those of a site whose copies are the oldest (3.3 s at 10^6 copies)."""

    location_field = ""  # a DataLocation field

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        value = site_id(self.value()) if self.location_field == "site_id" else self.value()
        matching = DataLocation.objects.filter(**{self.location_field: value})
        locations = list(matching.values_list("pk", flat=True))
        if len(locations) == 1:
            return queryset.filter(location_id=locations[0])  # an equality: see CopyChangeList
        return queryset.filter(location_id__in=locations)


def filtered_to_one_location(queryset) -> bool:
    """Whether ``queryset`` is filtered by ``location = <one value>`` (then every row has that location)."""
    for child in queryset.query.where.children:
        target = getattr(getattr(child, "lhs", None), "target", None)
        if getattr(child, "lookup_name", None) == "exact" and target is not None and target.name == "location" \
                and target.model is queryset.model._meta.concrete_model:
            return True
    return False


class CopyChangeList(CappedChangeList):
    """Copies at one location: the page's ids are read first, then its rows by primary key.

    Asked for whole rows ordered by id at one location, PostgreSQL guessed that the location's copies
    are spread evenly and walked the primary key from the newest, reading a million rows when that
    location's copies are the oldest (1.4 s at 10^6 copies); asked for the ids alone, it reads the
    (location, id) index, which holds them in that order (one more query, on this filter only; the
    pages after the first are read so anyway).
    """

    def get_results(self, request):
        super().get_results(request)
        if self.multi_page and self.page_num == 1 and filtered_to_one_location(self.queryset):
            self.result_list = rows_by_ids(self.queryset, self.result_list)


class CopySiteFilter(CopyLocationsFilter):
    title = "site"
    parameter_name = "site"
    location_field = "site_id"

    def lookups(self, request, model_admin):
        return [(str(site.pk), site.name) for site in Site.objects.order_by("name")]


class CopyLocationTypeFilter(CopyLocationsFilter):
    title = "location type"
    parameter_name = "location_type"
    location_field = "location_type"

    def lookups(self, request, model_admin):
        return LocationType.choices


class CopyAdmin(LargeTableAdmin):
    """Shared by the physical-copy models: where a copy is, and whether it is still there."""

    list_filter = ("status", CopySiteFilter, ("location", LocationListFilter), CopyLocationTypeFilter)

    def get_changelist(self, request, **kwargs):
        return CopyChangeList
    autocomplete_fields = ("location",)
    readonly_fields = ("status", "created_at", "updated_at")  # status: only by transitions (opsdb.copies)
    inlines = (TransitionHistoryInline,)


@admin.register(RawDataPackageCopy)
class RawDataPackageCopyAdmin(CopyAdmin):
    list_display = ("raw_package", "location", "status", "path", "verified_at", "updated_at")
    search_fields = ("^raw_package__name",)
    search_help_text = "Package name, or how it begins (not case-sensitive); filter by site or location."
    autocomplete_fields = ("raw_package", "location")
    list_select_related = ("raw_package", "location__site")


@admin.register(RawDataFileCopy)
class RawDataFileCopyAdmin(CopyAdmin):
    list_display = ("raw_file", "package", "location", "status", "path", "expires_at")
    search_fields = ("^raw_file__package__name", "^raw_file__relative_path")
    search_help_text = "Package name or file path, or how either begins (not case-sensitive)."
    autocomplete_fields = ("raw_file", "location")
    list_select_related = ("raw_file__package", "location__site")

    @admin.display(description="package", ordering="raw_file__package__name")
    def package(self, obj):
        return obj.raw_file.package


# --- every recorded transition in one place ----------------------------------------------------

def job_transition_names() -> list[str]:
    """Every transition name of every job's and copy's state machine (the values StateLog.transition takes)."""
    names = set()
    for model in [*job_kinds.models(), *copy_models()]:
        names.update(t.name for t in model._meta.get_field("status").get_all_transitions(model))
    return sorted(names)


def copy_models() -> list[type[PhysicalCopy]]:
    """The physical-copy models of every installed app."""
    return [model for model in apps.get_models() if issubclass(model, PhysicalCopy)]


class TransitionFilter(FixedChoicesFilter):
    title = "transition"
    parameter_name = "transition"
    field = "transition"

    def choices_list(self):
        return [(name, name) for name in job_transition_names()]


class TargetStateFilter(FixedChoicesFilter):
    title = "to state"
    parameter_name = "state"
    field = "state"

    def choices_list(self):
        return [*JobStatus.choices, *((v, f"{label} (copy)") for v, label in CopyStatus.choices
                                     if v not in JobStatus.values)]


@admin.register(StateLog)
class StateLogAdmin(LargeTableAdmin):
    """All job and copy transitions, read-only: the audit trail across every kind of job and copy."""

    list_display = ("timestamp", "job", "transition", "source_state", "state", "by", "description")
    list_filter = (
        "content_type", TransitionFilter, TargetStateFilter,
        ("timestamp", DateRangeQuickSelectListFilterBuilder(title="when")),
    )
    search_fields = ("=object_id", "^by__username")
    search_help_text = "A job's id, or the user name (or how it begins) of who made the transition."
    list_select_related = ("by", "content_type")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="job")
    def job(self, obj):
        return generic_link(obj.content_type, obj.object_id)


@admin.register(DataTransferLog)
class DataTransferLogAdmin(LargeTableAdmin):
    list_display = ("created_at", "level", "job_link", "attempt", "worker", "message", "log_file")
    list_filter = ("level", "content_type", ("created_at", DateRangeQuickSelectListFilterBuilder(title="when")))
    search_fields = ("^worker", "^message")
    search_help_text = "Worker name or message, or how either begins (not case-sensitive)."
    list_select_related = ("content_type",)
    readonly_fields = ("content_type", "object_id", "created_at", "log_file")

    @admin.display(description="job")
    def job_link(self, obj):
        return generic_link(obj.content_type, obj.object_id)

    @admin.display(description="log file")
    def log_file(self, obj):
        return log_line_link(obj)


def log_line_link(line: DataTransferLog):
    """A log line's file as a link or as text to copy (``content_type`` fetched with the line)."""
    kind = getattr(line.content_type.model_class(), "KIND", "") if line.content_type_id else ""
    return log_link_html(line.log_path, kind=kind, id=line.object_id, worker=line.worker)


def related_or_none(obj, name: str):
    """A reverse one-to-one fetched with select_related, or None when there is none."""
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


from opsdb import admin_accounts, admin_workers  # noqa: E402,F401  (accounts: no escalation; workers' tokens)
