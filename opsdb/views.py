"""The health check, and the error pages: JSON under ``/api/``, the site's HTML pages elsewhere.

A database that refuses or drops connections (restarting, out of connection slots, unreachable) is
a 503 with ``Retry-After`` — JSON under ``/api/`` — wherever the error surfaces: in a DRF view
(``opsdb.api.exceptions``), in another view (``DatabaseUnavailableMiddleware``) or in a middleware
(``server_error``, under DEBUG=0). Clients retry a 503; a 500 says the request itself was wrong.
"""

import sys

from django.contrib import messages
from django.contrib.auth.views import LogoutView
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views import defaults

API_PREFIX = "/api/"
RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "The database is not available right now; retry in a few seconds."


def is_database_unavailable(exc: BaseException | None) -> bool:
    """A connection-level database error (refused, dropped, too many clients), not a refused query."""
    return isinstance(exc, OperationalError | InterfaceError)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        response = JsonResponse({"detail": UNAVAILABLE}, status=503)
    else:
        page = f"<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1><p>{UNAVAILABLE}</p>"
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """503 with Retry-After for a view that met a database refusing or dropping connections."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable(request) if is_database_unavailable(exception) else None


def health(request):
    """Liveness and database check for load balancers; open to anonymous callers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # the point of a health check is to report, not raise
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """An error nobody expected (DEBUG=0): no details leave the server; they are in its log."""
    if is_database_unavailable(sys.exception()):  # raised in a middleware (sessions, authentication)
        return database_unavailable(request)
    if is_api(request):
        return JsonResponse({"detail": "Server error: the request was not completed; it is in the server's log."},
                            status=500)
    return defaults.server_error(request)


class SignOutView(LogoutView):
    """Sign out (POST) with a "signed out" message; opened directly (GET) it offers a button, not a blank 405.

    The admin's "Log out" uses it with ``next_page`` set to the admin's sign-in page.
    """

    http_method_names = ["get", "post", "options"]
    template_name = "registration/logout_confirm.html"

    def get(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect(self.get_success_url())
        return render(request, self.template_name, {"next_page": self.next_page})

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.success(request, "You are signed out.")
        return response
