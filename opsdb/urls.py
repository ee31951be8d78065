"""Top-level URLs: admin, operations dashboard and metrics, health check, API and the scientists' pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from operations.metrics import metrics_view
from opsdb import views

urlpatterns = [
    # Before the admin's own: its "Log out" lands on its sign-in page, with a message.
    path("admin/logout/", views.SignOutView.as_view(next_page="admin:login"), name="admin-logout"),
    path("admin/", admin.site.urls),
    path("health/", views.health, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("ops/", include("operations.urls")),
    path("api/v1/", include("opsdb.api.urls")),
    path("api/v1/", include("transfers.api.urls")),
    path("api/v1/", include("staging.api.urls")),
    path("api/v1/", include("custody.api.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.SignOutView.as_view(), name="logout"),
    path("", include("staging.urls")),
]

handler400 = "opsdb.views.bad_request"
handler403 = "opsdb.views.permission_denied"
handler404 = "opsdb.views.page_not_found"
handler500 = "opsdb.views.server_error"
