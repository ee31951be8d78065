from django.urls import path
from django.views.generic import RedirectView

from staging import views

app_name = "staging"

urlpatterns = [
    path("", views.scientist_required(RedirectView.as_view(pattern_name="staging:find")), name="home"),
    path("data/", views.find_data, name="find"),
    path("data/selection/", views.change_selection, name="selection"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_staging, name="request-new"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request-cancel"),
]
