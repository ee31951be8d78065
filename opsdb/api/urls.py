"""``/api/v1/``: the catalogue, ingest, the work protocol, and the OpenAPI schema and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from opsdb.api import ingest, views, work

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("sites", views.SiteViewSet)
router.register("locations", views.DataLocationViewSet)
router.register("instruments", views.InstrumentViewSet)
router.register("observations", views.ObservationViewSet)
router.register("raw-packages", views.RawDataPackageViewSet)
router.register("raw-files", views.RawDataFileViewSet)
router.register("raw-package-copies", views.RawDataPackageCopyViewSet)
router.register("file-copies", views.RawDataFileCopyViewSet)
router.register("transfer-logs", views.DataTransferLogViewSet)

urlpatterns = [
    # The work protocol first: its requests are most of the API's, and are resolved without trying
    # every catalogue pattern (with their format suffixes) before them.
    path("work/claim/", work.ClaimView.as_view(), name="work-claim"),
    path("work/partials/", work.PartialsView.as_view(), name="work-partials"),
    path("work/report/", work.ReportView.as_view(), name="work-report"),
    path("work/<str:kind>/<int:pk>/heartbeat/", work.HeartbeatView.as_view(), name="work-heartbeat"),
    path("work/<str:kind>/<int:pk>/complete/", work.CompleteView.as_view(), name="work-complete"),
    path("work/<str:kind>/<int:pk>/fail/", work.FailView.as_view(), name="work-fail"),
    path("work/<str:kind>/<int:pk>/log/", work.LogView.as_view(), name="work-log"),
    path("", include(router.urls)),
    path("ingest/raw-packages/", ingest.RawPackageIngestView.as_view(), name="ingest-raw-package"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
