from django.urls import include, path
from rest_framework.routers import DefaultRouter

from staging.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("archive-transfers", views.LongTermArchiveTransferViewSet)
router.register("fixity-checks", views.FixityCheckViewSet)
router.register("staging-jobs", views.StagingJobViewSet, basename="stagingjob")

urlpatterns = [path("", include(router.urls))]
