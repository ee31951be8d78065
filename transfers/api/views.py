"""Routes (operators write them, validated as in the admin), transfer packages, transfers, unpacks, logs."""

from django_fsm import TransitionNotAllowed
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from opsdb.api.permissions import IsOperator
from opsdb.api.views import (
    JobViewSetMixin,
    OperatorJobActionsMixin,
    ReadOnlyViewSet,
    WritableViewSet,
    request_reason,
)
from opsdb.models import REASON_MAX_LENGTH
from transfers.api import filters, serializers
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferRoute,
    DataTransferUnpack,
)
from transfers.services import route_pause, route_resume

ROUTE_REASON = inline_serializer(
    "RouteReason", {"reason": drf_serializers.CharField(max_length=REASON_MAX_LENGTH)}
)


class DataTransferRouteViewSet(WritableViewSet):
    """Routes; operators pause (PAUSED_MANUAL) and resume them with a reason: 409 when not allowed now."""

    queryset = DataTransferRoute.objects.all()
    serializer_class = serializers.DataTransferRouteSerializer
    filterset_class = filters.DataTransferRouteFilter

    def _transition(self, request, service):
        route = self.get_object()
        reason = request_reason(request)
        if isinstance(reason, Response):
            return reason
        try:
            route = service(route=route, reason=reason, by=request.user)
        except TransitionNotAllowed:
            route.refresh_from_db()
            return Response({"detail": f"The route is {route.get_state_display().lower()}: "
                                       f"{service.__name__.removeprefix('route_')} is not allowed now.",
                             "status": route.state}, status=409)
        return Response(self.get_serializer(route).data)

    @extend_schema(request=ROUTE_REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def pause(self, request, pk=None):
        """ACTIVE/PAUSED_AUTO → PAUSED_MANUAL: hold the route's transfers (``reason`` required)."""
        return self._transition(request, route_pause)

    @extend_schema(request=ROUTE_REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def resume(self, request, pk=None):
        """PAUSED_* → ACTIVE: its held transfers may be claimed again (``reason`` required)."""
        return self._transition(request, route_resume)


class DataTransferPackageViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = DataTransferPackage.objects.select_related("origin_location__site")
    serializer_class = serializers.DataTransferPackageSerializer
    filterset_class = filters.DataTransferPackageFilter


class DataTransferPackageCopyViewSet(ReadOnlyViewSet):
    queryset = DataTransferPackageCopy.objects.all()
    serializer_class = serializers.DataTransferPackageCopySerializer
    filterset_class = filters.DataTransferPackageCopyFilter


class DataTransferViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = DataTransfer.objects.select_related(
        "transfer_package", "origin_location__site", "destination_location__site"
    )
    serializer_class = serializers.DataTransferSerializer
    filterset_class = filters.DataTransferFilter


class DataTransferUnpackViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = DataTransferUnpack.objects.all()
    serializer_class = serializers.DataTransferUnpackSerializer
    filterset_class = filters.DataTransferUnpackFilter
