"""Pagination that stays fast on large tables.

Cursor (keyset) pagination rather than limit/offset: a page is ``WHERE id < :last ORDER BY id
DESC LIMIT n`` on an index, with no ``COUNT(*)`` of the whole table, so the cost of a page does not
grow with the table or with how deep the client pages; and rows inserted while a client pages
(jobs and logs are written all the time) neither repeat nor vanish, which offsets cannot promise.
The price: no page numbers or total count — clients follow ``next``. ``?ordering=`` on other
fields works too (the cursor then positions on that field, with an offset among ties).
"""

from rest_framework.pagination import CursorPagination


class KeysetPagination(CursorPagination):
    ordering = "-pk"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
