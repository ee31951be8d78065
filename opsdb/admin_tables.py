"""Admin lists that stay fast on tables of millions of rows.

What a changelist costs at 10^6 rows, and what replaces it here:
- two ``COUNT(*)`` per page (the paginator's and the full count): an unfiltered list takes the
  planner's row estimate (``pg_class.reltuples``, kept by autovacuum), a filtered one counts at
  most ``COUNT_CAP`` + 1 rows and says "10,000+"; no full count;
- deep ``OFFSET`` pages: pages stop at ``COUNT_CAP`` rows (page 100 at 100 rows a page); a
  deeper page number shows the last page offered, with a message to narrow the list instead;
- ``UPPER(x) LIKE '%q%'`` OR-ed across joins: search matches the start of a value (``^field``,
  case-insensitive) or all of it (``=field``), every field on an indexed column, each searched
  on its own (one table at a time) and the matches combined by primary key;
- facet counts ("Show counts") over the whole table: off;
- deep pages: the page's ids are read first (an index walk with its OFFSET), then its rows by key
  (with the joins its columns need), instead of joining every skipped row;
- per-row rendering: the row's link and checkbox are written out directly (the stock ones
  resolve the link's URL and render a form widget's template for every row).
Small tables (sites, locations, routes) keep the stock admin.
"""

import operator
from functools import reduce
from math import ceil

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import InvalidPage, Paginator
from django.db import connections, models
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

COUNT_CAP = 10_000
# Below this many rows (estimated) a table is counted exactly: cheap, and the figure is exact.
EXACT_BELOW = 100_000


class CappedCountPaginator(Paginator):
    """A paginator that never counts more than ``COUNT_CAP`` rows nor offers pages past them."""

    cap = COUNT_CAP

    @cached_property
    def estimated(self) -> bool:
        """True when the count is the planner's estimate of the whole table."""
        return self._estimate() is not None

    @cached_property
    def capped(self) -> bool:
        """True when there are more than ``cap`` matching rows (the count says "cap+")."""
        return not self.estimated and self.count > self.cap

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        if estimate is not None:
            return estimate
        return self.object_list.order_by()[: self.cap + 1].count()

    @cached_property
    def num_pages(self) -> int:
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        pages = ceil(max(1, self.count - self.orphans) / self.per_page)
        return min(pages, ceil(self.cap / self.per_page))

    def _estimate(self) -> int | None:
        queryset = self.object_list
        query = queryset.query
        if query.where or query.distinct or query.combinator:
            return None
        return table_estimate(queryset.model, queryset.db)


def table_estimate(model, using: str) -> int | None:
    """The planner's row count of ``model``'s table on PostgreSQL when it is large; else None."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] < EXACT_BELOW:
        return None
    return int(row[0])


PK_MARK = "opsdb-pk"  # stands for the primary key in the change URL reversed once per list


class CappedChangeList(ChangeList):
    """A changelist whose page number stops at the paginator's last page, and that never counts twice.

    Django's ``get_results`` with ``show_full_result_count = False``, plus the page clamp; a page past
    the first is read as its ids first, then its rows; each row's link is built without a URL lookup.
    """

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        # The list's filters, kept on each row's link so that its page leads back to this list. The
        # stock template tag adds them itself, resolving every row's URL to do so (~0.1 ms a row):
        # they are added here instead, and the tag, given none, keeps the link's query as it is.
        self.row_filters, self.preserved_filters = self.preserved_filters, ""

    @cached_property
    def change_url_pattern(self) -> str:
        meta = self.opts
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=(PK_MARK,),
                       current_app=self.model_admin.admin_site.name)

    def url_for_result(self, result):
        url = self.change_url_pattern.replace(PK_MARK, str(quote(getattr(result, self.pk_attname))))
        return f"{url}?{self.row_filters}" if self.row_filters else url

    def get_results(self, request):
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        if self.page_num > paginator.num_pages > 0:
            self.model_admin.message_user(
                request,
                f"Only the first {paginator.num_pages} pages are listed; search or filter to reach other rows.",
                messages.INFO,
            )
            self.page_num = paginator.num_pages
        result_count = paginator.count
        self.can_show_all = result_count <= self.list_max_show_all and not paginator.estimated
        self.multi_page = result_count > self.list_per_page
        if (self.show_all and self.can_show_all) or not self.multi_page:
            self.result_list = self.queryset._clone()
        else:
            try:
                self.result_list = paginator.page(self.page_num).object_list
            except InvalidPage:
                raise IncorrectLookupParameters from None
            if self.page_num > 1:
                self.result_list = rows_by_ids(self.queryset, self.result_list)
        self.result_count = result_count
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.full_result_count = None
        self.paginator = paginator


def rows_by_ids(queryset, page):
    """``page`` (a slice of ``queryset``) as two queries: its ids, then its rows in the list's order.

    With ``OFFSET`` n, PostgreSQL joins the n skipped rows to every related table of the page's
    columns before dropping them (page 100 of the unpacks: 10,000 rows through four joins, 150 ms);
    the ids alone come from an index walk, and only the page's rows are joined.
    """
    ids = list(page.values_list("pk", flat=True))
    return queryset.filter(pk__in=ids)


SEARCH_IDS_MAX = 1000  # a search matching more rows keeps its subquery (a broad prefix: the plan is right)


class LargeTableAdmin(admin.ModelAdmin):
    """A ModelAdmin for a table of millions of rows (see the module docstring).

    ``search_fields`` entries are ``^path`` (starts with, case-insensitive) or ``=path`` (equals;
    an integer field matches a number exactly); each path's column needs an index that serves it
    (migrations add ``UPPER(column) text_pattern_ops`` indexes on PostgreSQL).
    """

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return CappedChangeList

    def lookup_allowed(self, lookup, value, request=None):
        """A list filter class's own parameter is allowed even where it names a path across relations
        (``unpack__status__exact``, ``source_location__site__id__exact``): Django allows such a path
        only when ``list_filter`` names the field itself, and answers 400 otherwise."""
        own = {spec.parameter_name for spec in self.get_list_filter(request)
               if isinstance(spec, type) and issubclass(spec, admin.SimpleListFilter)}
        return lookup in own or super().lookup_allowed(lookup, value, request)

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        """The stock checkbox, written out: the stock one renders a form widget's templates for each row."""
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
                           ACTION_CHECKBOX_NAME, str(obj.pk), label)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        queries = self.search_queries(term)
        if not queries:
            return queryset.none(), False
        matches = [queryset.filter(q).order_by().values_list("pk", flat=True) for q in queries]
        # The matching ids first, on their own: inside the page's query (with its joins) PostgreSQL
        # guesses ~100 rows for a prefix and hash-joined the whole table (1.7 s at 10^6 rows for one
        # archive transfer); a short list of ids is looked up by primary key. UNION ALL, not UNION:
        # it stops at the limit instead of reading every match to remove duplicates first.
        probe = matches[0].union(*matches[1:], all=True) if len(matches) > 1 else matches[0]
        found = list(probe[:SEARCH_IDS_MAX + 1])
        if len(found) <= SEARCH_IDS_MAX:
            return queryset.filter(pk__in=list(dict.fromkeys(found))), False
        # More matches than that: a broad prefix (a worker's name, a common message). On the table's
        # own columns the conditions go into the page's query, where the planner, knowing from the
        # statistics that the match is broad, walks the list's order and keeps the matching rows
        # (the first page of 100 is near); a subquery would read every match first (1.2 s for a
        # worker's 250,000 log lines at 10^6 rows).
        if all("__" not in spec.lstrip("^=") for spec in self.search_fields):
            return queryset.filter(reduce(operator.or_, queries)), False
        combined = matches[0].union(*matches[1:]) if len(matches) > 1 else matches[0]
        return queryset.filter(pk__in=combined), False

    def search_queries(self, term: str) -> list[models.Q]:
        """One condition per search field that can match ``term`` (a number field only a number)."""
        queries = []
        for spec in self.search_fields:
            path = spec.lstrip("^=")
            if spec.startswith("^"):
                queries.append(models.Q(**{f"{path}__istartswith": term}))
            elif spec.startswith("="):
                field = final_field(self.model, path)
                if isinstance(field, (models.CharField, models.TextField)):
                    queries.append(models.Q(**{f"{path}__iexact": term}))
                elif isinstance(field, models.IntegerField) and term.isdigit() and len(term) < 19:
                    queries.append(models.Q(**{path: int(term)}))
            else:
                raise ValueError(f"{type(self).__name__}.search_fields: {spec!r} must start with ^ or =")
        return queries


def final_field(model, path: str):
    """The field at the end of a lookup path (``raw_package__name`` → RawDataPackage.name)."""
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model
    return model._meta.get_field(name)
