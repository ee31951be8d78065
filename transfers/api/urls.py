from django.urls import include, path
from rest_framework.routers import DefaultRouter

from transfers.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("routes", views.DataTransferRouteViewSet)
router.register("transfer-packages", views.DataTransferPackageViewSet)
router.register("transfer-package-copies", views.DataTransferPackageCopyViewSet)
router.register("transfers", views.DataTransferViewSet)
router.register("unpacks", views.DataTransferUnpackViewSet)

urlpatterns = [path("", include(router.urls))]
