"""The pages' middleware (``settings.MIDDLEWARE`` from ``WorkApiBypass`` to ``PageMiddlewareEnd``), skipped
by a worker's token request to the work API.

Workers call ``/api/v1/work/`` hundreds of times a second with ``Authorization: Token …``. For such a
request the pages' middleware does nothing the answer depends on, yet cost about a tenth of its CPU:

- sessions and authentication: DRF authenticates a ``Token`` header by the token alone (a bad
  token is 401; it never falls back to the session), and sets ``request.user`` itself;
- CSRF: the API views are exempt (DRF checks CSRF only for session-authenticated requests); its
  ``process_view``, which Django calls for every request, returns at once for them;
- messages, clickjacking (``X-Frame-Options``), whitenoise (static files), ``CommonMiddleware``
  (``www.``/trailing-slash redirects: every work URL is POST and ends in a slash; without the
  slash it is 404), axes (its lockout answer follows a failed password sign-in, not a token).

What the work API needs stays outside the block and runs for every request: the request metrics,
``SecurityMiddleware``, the 503 of ``DatabaseUnavailableMiddleware`` and simple-history's request
context. A request to the work API without a ``Token`` header (an operator trying it in the
browsable API with their session) goes through the whole block as before.
"""

import threading
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

WORK_API_PREFIX = "/api/v1/work/"

_built = threading.local()  # PageMiddlewareEnd → WorkApiBypass, while one handler builds its chain


def skips_page_middleware(request: HttpRequest) -> bool:
    """A worker's token request to the work API (DRF's ``Token`` keyword, any case)."""
    return request.path_info.startswith(WORK_API_PREFIX) and request.META.get(
        "HTTP_AUTHORIZATION", "")[:6].lower() == "token "


class PageMiddlewareEnd:
    """Marks the end of the pages' middleware in ``settings.MIDDLEWARE``; hands what follows to ``WorkApiBypass``.

    Django builds the chain from the last middleware to the first, so this one is made first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        _built.after_pages = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


class WorkApiBypass:
    """Before the pages' middleware: a worker's token request to the work API goes straight past it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.after_pages = _built.__dict__.pop("after_pages", None)
        if self.after_pages is None:
            raise ImproperlyConfigured("opsdb.middleware.PageMiddlewareEnd must follow WorkApiBypass in MIDDLEWARE")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if skips_page_middleware(request):
            return self.after_pages(request)
        return self.get_response(request)
