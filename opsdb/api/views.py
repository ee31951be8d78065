"""Read endpoints of the catalogue; operators also write sites and locations."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from opsdb import services
from opsdb.api import filters, serializers
from opsdb.api.permissions import IsOperator, ModelRolePermissions, allowed_site_ids
from opsdb.models import (
    DataLocation,
    Instrument,
    Observation,
    RawDataFile,
    RawDataFileCopy,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
)
from opsdb.work import REGISTRY


class RoleViewSetMixin:
    """Model permissions per role (``opsdb.roles``); ``view`` needed to read."""

    permission_classes = [IsAuthenticated, ModelRolePermissions]
    ordering_fields = ["id", "created_at"]
    # ASCII digits within 64 bits: "/sites/١/" is a 404, not site 1 (``int()`` reads any script's digits).
    lookup_value_regex = "[0-9]{1,18}"


class ReadOnlyViewSet(RoleViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class WritableViewSet(RoleViewSetMixin, viewsets.ModelViewSet):
    pass


class JobViewSetMixin:
    """A restricted worker only sees jobs at its sites, as it only claims them (``opsdb.work`` handlers)."""

    job_kind: str
    site_field: str  # where the job is, for when its kind's handler is not registered

    def get_queryset(self):
        queryset = super().get_queryset()
        site_ids = allowed_site_ids(self.request.user)
        if site_ids is None:
            return queryset
        handler = REGISTRY.get(self.job_kind)
        if handler is None:
            return queryset.filter(**{f"{self.site_field}__in": site_ids})
        return handler.at_sites(queryset, site_ids)


REASON = inline_serializer("TransitionReason", {"reason": drf_serializers.CharField(required=False, max_length=500)})


class OperatorJobActionsMixin:
    """An operator's retry (FAILED → PENDING) and cancel (PENDING/FAILED → CANCELLED); 409 with the status otherwise."""

    def _transition(self, request, service):
        job = self.get_object()
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        if not isinstance(reason, str) or len(reason) > 500:
            return Response({"reason": ["Give a short text (at most 500 characters)."]}, status=400)
        service(job=job, by=request.user, reason=reason)
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(request=REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def retry(self, request, pk=None):
        return self._transition(request, services.job_retry)

    @extend_schema(request=REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def cancel(self, request, pk=None):
        return self._transition(request, services.job_cancel)


class SiteViewSet(WritableViewSet):
    queryset = Site.objects.all()
    serializer_class = serializers.SiteSerializer
    filterset_class = filters.SiteFilter
    ordering_fields = ["id", "name", "created_at"]


class DataLocationViewSet(WritableViewSet):
    queryset = DataLocation.objects.select_related("site")
    serializer_class = serializers.DataLocationSerializer
    filterset_class = filters.DataLocationFilter
    ordering_fields = ["id", "name", "priority", "created_at"]


class InstrumentViewSet(ReadOnlyViewSet):
    queryset = Instrument.objects.all()
    serializer_class = serializers.InstrumentSerializer
    filterset_class = filters.InstrumentFilter
    ordering_fields = ["id", "name"]


class ObservationViewSet(ReadOnlyViewSet):
    queryset = Observation.objects.select_related("instrument")
    serializer_class = serializers.ObservationSerializer
    filterset_class = filters.ObservationFilter
    ordering_fields = ["id", "obs_id", "start_time"]


class RawDataPackageViewSet(ReadOnlyViewSet):
    queryset = RawDataPackage.objects.select_related("observation")
    serializer_class = serializers.RawDataPackageSerializer
    filterset_class = filters.RawDataPackageFilter
    ordering_fields = ["id", "name", "size", "created_at"]


class RawDataFileViewSet(ReadOnlyViewSet):
    queryset = RawDataFile.objects.all()
    serializer_class = serializers.RawDataFileSerializer
    filterset_class = filters.RawDataFileFilter
    ordering_fields = ["id", "relative_path", "size"]


class RawDataPackageCopyViewSet(ReadOnlyViewSet):
    queryset = RawDataPackageCopy.objects.select_related("raw_package", "location__site")
    serializer_class = serializers.RawDataPackageCopySerializer
    filterset_class = filters.RawDataPackageCopyFilter


class RawDataFileCopyViewSet(ReadOnlyViewSet):
    queryset = RawDataFileCopy.objects.select_related("raw_file", "location__site")
    serializer_class = serializers.RawDataFileCopySerializer
    filterset_class = filters.RawDataFileCopyFilter
