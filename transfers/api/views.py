"""Routes (operators write them, validated as in the admin), transfer packages, transfers, unpacks, logs."""


from opsdb.api.views import JobViewSetMixin, OperatorJobActionsMixin, ReadOnlyViewSet, WritableViewSet
from transfers.api import filters, serializers
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferRoute,
    DataTransferUnpack,
)


class DataTransferRouteViewSet(WritableViewSet):
    queryset = DataTransferRoute.objects.all()
    serializer_class = serializers.DataTransferRouteSerializer
    filterset_class = filters.DataTransferRouteFilter


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
