"""The operations dashboard at /ops/: operators only (others signed in get 403; anonymous users sign in)."""

from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from operations.dashboard import dashboard_context
from opsdb.roles import is_operator

REFRESH_SECONDS = 60


def operator_required(view):
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_operator(request.user):
            raise PermissionDenied("The operations dashboard is for operators.")
        return view(request, *args, **kwargs)

    return wrapped


@require_safe
@operator_required
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), **dashboard_context(), "title": "Operations dashboard",
               "refresh_seconds": REFRESH_SECONDS, "is_nav_sidebar_enabled": False}
    return render(request, "operations/dashboard.html", context)
