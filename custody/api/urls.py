from django.urls import include, path
from rest_framework.routers import DefaultRouter

from custody.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("delete-jobs", views.DeletionJobViewSet)

urlpatterns = [path("", include(router.urls))]
