from django.contrib import messages
from django.contrib.auth.views import LogoutView
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render


def health(request):
    """Liveness and database check for load balancers; open to anonymous callers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # the point of a health check is to report, not raise
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})


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
