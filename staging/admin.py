"""The operator admin for long-term archive transfers and scientists' staging jobs."""

from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html

from opsdb.admin import (
    LeasedJobAdmin,
    LocationListFilter,
    ReadOnlyInlineMixin,
    human_size,
    site_of_location_filter,
)
from opsdb.admin_errors import IndexedLastErrorMixin
from opsdb.admin_tables import LargeTableAdmin
from staging.models import FixityCheck, FixityHold, LongTermArchiveTransfer, StagingJob, StagingJobPackage


@admin.register(LongTermArchiveTransfer)
class LongTermArchiveTransferAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    """Archive transfers; the ones waiting for an operator are filtered by requires_intervention."""

    list_display = (
        "raw_package", "source_location", "destination_location", "status", "intervention", "repair_of",
        "attempts_column", "error_column", "next_attempt_at", "lease_column", "created_at",
    )
    list_filter = (
        "status", "requires_intervention", ("repair_of", admin.EmptyFieldListFilter),
        site_of_location_filter("source_location"),
        ("source_location", LocationListFilter),
        ("destination_location", LocationListFilter),
    )
    search_fields = ("^raw_package__name",)
    search_help_text = "Package name, or how it begins (not case-sensitive)."
    autocomplete_fields = ("raw_package", "source_location", "destination_location")
    list_select_related = ("raw_package", "source_location__site", "destination_location__site", "repair_of")
    created_with = ("raw_package", "source_location", "destination_location", "repair_of", "method")
    readonly_fields = (*LeasedJobAdmin.readonly_fields, "intervention")
    job_state_fields = ("status", "intervention", *LeasedJobAdmin.job_state_fields[1:])

    @admin.display(description="requires intervention", ordering="requires_intervention")
    def intervention(self, obj):
        """A warning, not a green tick: an operator must act."""
        if not obj.requires_intervention:
            return "-"
        return format_html('<strong class="needs-operator" style="color: var(--error-fg);">⚠ {}</strong>',
                           "needs an operator")


class StagingJobPackageInline(ReadOnlyInlineMixin, admin.TabularInline):
    """Per-package progress of a staging job, read-only (the worker reports it)."""

    model = StagingJobPackage
    fields = ("raw_package", "source_location", "state", "bytes_staged", "staged_at", "error")
    readonly_fields = fields
    verbose_name = "package"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("raw_package", "source_location__site")


@admin.register(StagingJob)
class StagingJobAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    list_display = (
        "__str__", "owner", "destination_location", "status", "package_count", "attempts_column", "error_column",
        "expires_at", "lease_column", "created_at",
    )
    list_filter = (
        "status", site_of_location_filter("destination_location"), ("destination_location", LocationListFilter),
        "owner",
    )
    search_fields = ("^owner__username", "^items__raw_package__name")
    search_help_text = "Who asked (user name) or a package name, or how either begins (not case-sensitive)."
    autocomplete_fields = ("owner", "destination_location")
    list_select_related = ("owner", "destination_location__site")
    created_with = ("owner", "destination_location", "lifetime")
    readonly_fields = (*LeasedJobAdmin.readonly_fields, "expires_at", "cleaned_at")
    job_state_fields = (*LeasedJobAdmin.job_state_fields, "expires_at", "cleaned_at")
    inlines = (StagingJobPackageInline, *LeasedJobAdmin.inlines)

    def get_queryset(self, request):
        # Counted per row shown, not grouped over every staging job.
        items = (
            StagingJobPackage.objects.filter(job=OuterRef("pk")).order_by()
            .values("job").annotate(n=Count("pk")).values("n")
        )
        return super().get_queryset(request).annotate(n_packages=Coalesce(Subquery(items), 0))

    @admin.display(description="packages")
    def package_count(self, obj):
        return obj.n_packages


@admin.register(StagingJobPackage)
class StagingJobPackageAdmin(LargeTableAdmin):
    list_display = ("raw_package", "job", "state", "staged", "source_location", "staged_at")
    list_filter = ("state", ("source_location", LocationListFilter))
    search_fields = ("^raw_package__name", "^job__owner__username")
    search_help_text = "Package name or who asked (user name), or how either begins (not case-sensitive)."
    autocomplete_fields = ("job", "raw_package", "source_location")
    list_select_related = ("raw_package", "job__owner", "source_location__site")
    readonly_fields = ("state", "bytes_staged", "staged_at", "error")

    @admin.display(description="bytes staged", ordering="bytes_staged")
    def staged(self, obj):
        return human_size(obj.bytes_staged)


@admin.register(FixityCheck)
class FixityCheckAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    """Fixity checks (job kind ``verify``): what each re-read of an archive copy found."""

    list_display = ("copy", "location", "recheck", "status", "outcome", "attempts_column", "error_column",
                    "lease_column", "finished_at", "created_at")
    list_filter = ("status", "outcome", "recheck", ("location", LocationListFilter))
    search_fields = ("^copy__raw_package__name",)
    search_help_text = "Package name, or how it begins (not case-sensitive)."
    list_select_related = ("copy__raw_package", "copy__location__site", "location__site")
    created_with = ("copy", "location", "size", "recheck")
    readonly_fields = (*LeasedJobAdmin.readonly_fields, "outcome", "checksum_found")


@admin.register(FixityHold)
class FixityHoldAdmin(admin.ModelAdmin):
    """Where automatic repair stopped after many failed checks; an operator releases a hold."""

    list_display = ("location", "created_at", "checks", "failures", "reason", "released_at", "released_by")
    list_filter = (("released_at", admin.EmptyFieldListFilter), ("location", LocationListFilter))
    list_select_related = ("location__site",)
    readonly_fields = ("location", "reason", "checks", "failures", "created_at", "released_at", "released_by")
    actions = ("release",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Release the selected holds (automatic repair resumes there)", permissions=["change"])
    def release(self, request, queryset):
        count = queryset.filter(released_at__isnull=True).update(released_at=timezone.now(),
                                                                 released_by=request.user.get_username())
        self.message_user(request, f"{count} hold(s) released; automatic repair resumes at the next pass.")
