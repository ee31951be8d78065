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
- facet counts ("Show counts") over the whole table: off.
Small tables (sites, locations, routes) keep the stock admin.
"""

import operator
from functools import reduce
from math import ceil

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import InvalidPage, Paginator
from django.db import connections, models
from django.utils.functional import cached_property

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


class CappedChangeList(ChangeList):
    """A changelist whose page number stops at the paginator's last page, and that never counts twice.

    Django's ``get_results`` with ``show_full_result_count = False``, plus the page clamp.
    """

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
        self.result_count = result_count
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.full_result_count = None
        self.paginator = paginator


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
