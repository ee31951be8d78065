"""The "last error (open jobs)" filter by the MD5 of the error, which an index of the open jobs serves.

``opsdb.admin.LastErrorListFilter`` matches ``last_error`` itself: at 10^6 archive transfers the
10,000 failed ones with the commonest error were each read from the table to be compared (the
capped count and the page: 3 s). Matching ``MD5(last_error)`` instead lets the partial index
``(MD5(last_error), created_at, id) WHERE status IN ('PENDING', 'FAILED')`` (migrations,
``opsdb.migration_ops.open_error_index``) give the page in its order and count it alone. The
choices offered, and the rows listed, are the same.
"""

from hashlib import md5

from django.db.models.functions import MD5

from opsdb.admin import LastErrorListFilter
from opsdb.choices import JobStatus


class IndexedLastErrorFilter(LastErrorListFilter):
    """The same choices (the commonest errors of the latest failed jobs); matched by MD5."""

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        digest = md5(self.value().encode()).hexdigest()
        return queryset.alias(last_error_md5=MD5("last_error")).filter(
            status__in=(JobStatus.PENDING, JobStatus.FAILED), last_error_md5=digest
        )


class IndexedLastErrorMixin:
    """For a ``LeasedJobAdmin`` whose table has the open-error index: its filter in place of the plain one."""

    def get_list_filter(self, request):
        return [IndexedLastErrorFilter if f is LastErrorListFilter else f for f in super().get_list_filter(request)]
