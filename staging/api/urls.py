from rest_framework.routers import DefaultRouter

from staging.api.views import StagingJobViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("staging-jobs", StagingJobViewSet, basename="stagingjob")

urlpatterns = router.urls
