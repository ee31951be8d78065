"""The operator admin for routes, transfer packages, transfers and unpacking."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django_fsm import TransitionNotAllowed
from simple_history.admin import SimpleHistoryAdmin

from opsdb.admin import (
    ROUTE_RELATED,
    DataTransferLogInline,
    FixedChoicesFilter,
    KeepSavedObjectHeadingMixin,
    LeasedJobAdmin,
    LocationListFilter,
    ReadOnlyInlineMixin,
    RouteListFilter,
    TransitionHistoryInline,
    admin_link,
    human_size,
    job_status_filter,
    related_or_none,
    site_of_location_filter,
    titled,
)
from opsdb.admin_errors import IndexedLastErrorMixin
from opsdb.admin_tables import LargeTableAdmin
from opsdb.choices import JobStatus
from transfers.choices import PAUSED_STATES, RouteState
from transfers.forms import RouteAdminForm
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferPackageMember,
    DataTransferRoute,
    DataTransferUnpack,
)
from transfers.services import route_pause, route_resume

TRANSFER_RELATED = (
    "transfer_package", "origin_location__site", "destination_location__site", "unpack",
)


ROUTE_STATE_ACTIONS = {
    # name → (service, button label, past tense, states it is offered in)
    "pause": (route_pause, "Pause", "paused", (RouteState.ACTIVE, RouteState.PAUSED_AUTO)),
    "resume": (route_resume, "Resume", "resumed", PAUSED_STATES),
}


@admin.register(DataTransferRoute)
class DataTransferRouteAdmin(KeepSavedObjectHeadingMixin, SimpleHistoryAdmin):
    """Routes are edited at runtime; DataTransferRoute.clean() errors appear on the form fields.

    Its state changes only through pause/resume (with a reason) and the route-health rules; every
    change is in the transition history on the page.
    """

    form = RouteAdminForm
    list_display = (
        "__str__", "state_column", "origin_site", "destination_site", "route_type", "method", "relay_site",
        "origin_location", "destination_location", "active", "max_concurrent", "updated_at",
    )
    list_display_links = ("__str__",)
    list_filter = ("state", "route_type", "method", "active", "origin_site", "destination_site")
    readonly_fields = ("state", "state_reason", "state_since", "state_by", "consecutive_failures", "cooldown_until",
                       "probe_transfer")
    inlines = (TransitionHistoryInline, DataTransferLogInline)
    search_fields = (
        "origin_site__name", "destination_site__name", "relay_site__name", "origin_location__name",
        "destination_location__name",
    )
    autocomplete_fields = ("origin_site", "destination_site", "relay_site", "origin_location", "destination_location")
    list_select_related = ROUTE_RELATED
    fieldsets = (
        (None, {"fields": ("origin_site", "destination_site", "route_type", "method", "active")}),
        ("Relay (relay routes only)", {"fields": ("relay_site",)}),
        ("Location override (custom routes only)", {"fields": ("origin_location", "destination_location")}),
        ("Limits and bundling", {"fields": ("max_concurrent", "bundle_target_size", "bundle_max_wait")}),
        ("Health (changes only by pause/resume and the health rules)", {"fields": (
            "state", "state_reason", "state_since", "state_by", "consecutive_failures", "cooldown_until",
            "probe_transfer", "allow_relay_fallback",
        )}),
    )

    def get_queryset(self, request):
        # Also serves the autocomplete of DataTransfer.route: its labels read every end.
        return super().get_queryset(request).select_related(*ROUTE_RELATED)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()  # a new route has no history yet

    @admin.display(description="state", ordering="state")
    def state_column(self, obj):
        if not obj.is_paused:
            return obj.get_state_display()
        return format_html('<strong style="color: var(--error-fg);" title="{}">{}</strong><br><small>{}</small>',
                           obj.state_reason, obj.get_state_display(), obj.state_reason[:80])

    def get_urls(self):
        urls = [path("<path:object_id>/state/", self.admin_site.admin_view(self.state_view),
                     name="transfers_datatransferroute_state")]
        return urls + super().get_urls()

    def state_view(self, request, object_id):
        """POST target of the pause/resume form on the route's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        route = self.get_object(request, unquote(object_id))
        if route is None:
            raise Http404(f"No route with id {object_id!r}.")
        name = request.POST.get("action", "")
        if name not in ROUTE_STATE_ACTIONS or not self.has_change_permission(request, route):
            raise PermissionDenied
        service, _, done, _ = ROUTE_STATE_ACTIONS[name]
        try:
            route = service(route=route, reason=request.POST.get("reason", ""), by=request.user)
        except ValidationError as exc:
            self.message_user(request, f"Not {done}: {' '.join(exc.messages)}", messages.WARNING)
        except TransitionNotAllowed:
            route.refresh_from_db()
            self.message_user(request, f"Not {done}: the route is {route.get_state_display().lower()}.",
                              messages.WARNING)
        else:
            self.message_user(request, f"Route {done}: now {route.get_state_display().lower()}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:transfers_datatransferroute_change", args=[route.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context["route_state_url"] = reverse("admin:transfers_datatransferroute_state", args=[obj.pk])
            context["route_state_actions"] = [
                (name, label) for name, (_, label, _, sources) in ROUTE_STATE_ACTIONS.items() if obj.state in sources
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)


class DataTransferPackageCopyInline(admin.TabularInline):
    model = DataTransferPackageCopy
    fields = ("location", "status", "path", "checksum_verified", "verified_at")
    readonly_fields = ("status",)  # changed only by the copy's transitions (opsdb.copies)
    autocomplete_fields = ("location",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location__site")


class DataTransferInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The transfers of a package, read-only, linked to their own pages (retry/cancel there)."""

    model = DataTransfer
    fk_name = "transfer_package"
    fields = ("transfer", "status", "attempts", "method", "hop", "unpack_status")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*TRANSFER_RELATED)

    @admin.display(description="transfer")
    def transfer(self, obj):
        return admin_link(obj, f"{obj.origin_location} → {obj.destination_location}")

    @admin.display(description="unpack")
    def unpack_status(self, obj):
        unpack = related_or_none(obj, "unpack")
        return unpack.get_status_display() if unpack else "-"


@admin.register(DataTransferPackage)
class DataTransferPackageAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    list_display = (
        "name", "origin_location", "status", "member_count", "payload", "size_display", "attempts_column",
        "error_column", "lease_column", "created_at",
    )
    list_filter = (
        "status", site_of_location_filter("origin_location"), ("origin_location", LocationListFilter),
        "next_attempt_at",
    )
    search_fields = ("^name", "^members__raw_package__name")
    search_help_text = "Bundle name or the name of a raw package in it, or how either begins (not case-sensitive)."
    autocomplete_fields = ("origin_location",)
    list_select_related = ("origin_location__site",)
    created_with = ("name", "origin_location", "archive_path", "payload_size", "target_size", "size", "checksum",
                    "checksum_algorithm")
    # A bundle of 10–50 TB holds thousands of raw packages: the page shows a sample and links the full list.
    readonly_fields = (*LeasedJobAdmin.readonly_fields, "member_list")
    inlines = (DataTransferPackageCopyInline, DataTransferInline, *LeasedJobAdmin.inlines)
    member_sample = 20

    def get_queryset(self, request):
        # Counted per row shown (a subquery on the member index), not grouped over every bundle.
        members = (
            DataTransferPackageMember.objects.filter(transfer_package=OuterRef("pk")).order_by()
            .values("transfer_package").annotate(n=Count("pk")).values("n")
        )
        return super().get_queryset(request).annotate(n_members=Coalesce(Subquery(members), 0))

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.n_members

    @admin.display(description="members")
    def member_list(self, obj):
        if obj.pk is None:
            return "-"
        members = obj.members.select_related("raw_package").order_by("raw_package__name")[: self.member_sample]
        url = reverse("admin:transfers_datatransferpackagemember_changelist") + f"?transfer_package={obj.pk}"
        sample = format_html_join(
            ", ", "{} ({})", ((admin_link(m.raw_package), human_size(m.raw_package.size)) for m in members)
        )
        return format_html('{} raw package(s): {}{} <a href="{}">all members</a>', obj.n_members, sample,
                           " …" if obj.n_members > self.member_sample else "", url)

    @admin.display(description="payload", ordering="payload_size")
    def payload(self, obj):
        return human_size(obj.payload_size)

    @admin.display(description="archive size", ordering="size")
    def size_display(self, obj):
        return human_size(obj.size)


@admin.register(DataTransferPackageCopy)
class DataTransferPackageCopyAdmin(LargeTableAdmin):
    list_display = ("transfer_package", "location", "status", "path", "verified_at", "updated_at")
    list_filter = ("status", site_of_location_filter("location"), ("location", LocationListFilter))
    search_fields = ("^transfer_package__name",)
    search_help_text = "Bundle name, or how it begins (not case-sensitive)."
    autocomplete_fields = ("transfer_package", "location")
    list_select_related = ("transfer_package", "location__site")
    readonly_fields = ("status", "created_at", "updated_at")  # status: only by transitions (opsdb.copies)
    inlines = (TransitionHistoryInline,)


@admin.register(DataTransferPackageMember)
class DataTransferPackageMemberAdmin(LargeTableAdmin):
    list_display = ("raw_package", "transfer_package")
    search_fields = ("^raw_package__name", "^transfer_package__name")
    search_help_text = "Raw package or bundle name, or how either begins (not case-sensitive)."
    autocomplete_fields = ("raw_package", "transfer_package")
    list_select_related = ("raw_package", "transfer_package")


class HopFilter(FixedChoicesFilter):
    title = "hop"
    parameter_name = "hop"
    field = "hop"

    def choices_list(self):
        return [("1", "1 (from the origin)"), ("2", "2 (after a relay)")]


UnpackStatusFilter = job_status_filter(JobStatus.UNPACKED, "unpack__status", "unpack status")


@admin.register(DataTransfer)
class DataTransferAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    """A transfer's own state, its unpack state (kept apart), attempts, history and log lines."""

    list_display = (
        "__str__", "status", "unpack_status", "method", "hop", "attempts_column", "error_column", "next_attempt_at",
        "lease_column", "created_at",
    )
    list_filter = (
        "status", UnpackStatusFilter, "method", HopFilter,
        site_of_location_filter("origin_location", "origin site"),
        site_of_location_filter("destination_location", "destination site"),
        ("origin_location", titled(LocationListFilter, "origin location")),
        ("destination_location", titled(LocationListFilter, "destination location")),
        ("route", RouteListFilter),
    )
    search_fields = ("^transfer_package__name",)
    search_help_text = "Bundle name, or how it begins (not case-sensitive)."
    autocomplete_fields = ("transfer_package", "route", "origin_location", "destination_location", "previous")
    list_select_related = TRANSFER_RELATED
    raw_id_fields = ("repair_of",)  # a copy, among millions: by id
    created_with = ("transfer_package", "route", "origin_location", "destination_location", "method", "hop",
                    "previous", "destination_path", "repair_of")

    def get_readonly_fields(self, request, obj=None):
        extra = ("unpack_state",) if obj else ()
        return (*super().get_readonly_fields(request, obj), *extra)

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "unpack_state"]
        return [*fields, "unpack_state"] if obj else fields

    def get_queryset(self, request):
        # select_related here replaces list_select_related on the changelist, so name everything.
        return super().get_queryset(request).select_related(*TRANSFER_RELATED)

    @admin.display(description="unpack", ordering="unpack__status")
    def unpack_status(self, obj):
        unpack = related_or_none(obj, "unpack")
        return unpack.get_status_display() if unpack else "-"

    @admin.display(description="unpack state")
    def unpack_state(self, obj):
        unpack = related_or_none(obj, "unpack")
        if unpack is None:
            return "not started (unpacking starts when the transfer is transferred)"
        error = format_html(" · last error: {}", unpack.last_error) if unpack.last_error else ""
        return format_html(
            "{} · {} attempt(s) failed{} · {}", unpack.get_status_display(), unpack.attempts, error,
            admin_link(unpack, "open the unpack job"),
        )


@admin.register(DataTransferUnpack)
class DataTransferUnpackAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    list_display = (
        "__str__", "status", "attempts_column", "error_column", "next_attempt_at", "lease_column", "created_at",
    )
    list_filter = (
        "status", site_of_location_filter("transfer__destination_location"),
        ("transfer__destination_location", LocationListFilter),
    )
    search_fields = ("^transfer__transfer_package__name",)
    search_help_text = "Bundle name, or how it begins (not case-sensitive)."
    autocomplete_fields = ("transfer",)
    created_with = ("transfer",)
    list_select_related = (
        "transfer__transfer_package", "transfer__origin_location__site", "transfer__destination_location__site",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*self.list_select_related)
