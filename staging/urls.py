from django.urls import path, register_converter
from django.views.generic import RedirectView

from staging import views

app_name = "staging"


class IdConverter:
    """A database id: digits that fit in 64 bits, so an absurd number is a 404, not an overflow."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("", views.scientist_required(RedirectView.as_view(pattern_name="staging:find")), name="home"),
    path("data/", views.find_data, name="find"),
    path("data/selection/", views.change_selection, name="selection"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_staging, name="request-new"),
    path("requests/<id:pk>/", views.request_detail, name="request-detail"),
    path("requests/<id:pk>/cancel/", views.request_cancel, name="request-cancel"),
    path("requests/<id:pk>/extend/", views.request_extend, name="request-extend"),
    path("requests/<id:pk>/release/", views.request_release, name="request-release"),
]
