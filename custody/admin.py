"""The operator admin for delete jobs and the copies each covers."""

from django.contrib import admin

from custody.models import DeletionItem, DeletionJob
from opsdb.admin import LeasedJobAdmin, LocationListFilter, ReadOnlyInlineMixin, human_size, site_of_location_filter
from opsdb.admin_errors import IndexedLastErrorMixin


class DeletionItemInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The copies of a delete job and what the worker reported for each."""

    model = DeletionItem
    fields = ("path", "size", "outcome", "error", "raw_package_copy", "transfer_package_copy", "file_copy")
    readonly_fields = fields
    verbose_name = "copy"
    verbose_name_plural = "copies"


@admin.register(DeletionJob)
class DeletionJobAdmin(IndexedLastErrorMixin, LeasedJobAdmin):
    list_display = ("__str__", "location", "status", "size_display", "attempts_column", "error_column",
                    "next_attempt_at", "lease_column", "created_at")
    list_filter = ("status", site_of_location_filter("location"), ("location", LocationListFilter))
    search_fields = ("=id",)
    search_help_text = "A delete job's id."
    list_select_related = ("location__site",)
    created_with = ("location", "reason", "size")
    inlines = (DeletionItemInline, *LeasedJobAdmin.inlines)

    @admin.display(description="frees", ordering="size")
    def size_display(self, obj):
        return human_size(obj.size)
