"""Filters of routes, transfer packages, transfers and unpacks."""

import django_filters as filters
from django.db.models import Q

from opsdb.api.filters import CopyFilterSet, CreatedRangeFilterSet, IdFilter, JobFilterSet
from opsdb.choices import TransferMethod
from transfers.choices import RouteState, RouteType
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferRoute,
    DataTransferUnpack,
)


class DataTransferRouteFilter(CreatedRangeFilterSet):
    origin_site = filters.CharFilter(field_name="origin_site__name")
    origin_site_id = IdFilter(field_name="origin_site_id")
    destination_site = filters.CharFilter(field_name="destination_site__name")
    destination_site_id = IdFilter(field_name="destination_site_id")
    relay_site = filters.CharFilter(field_name="relay_site__name")
    relay_site_id = IdFilter(field_name="relay_site_id")
    site = filters.CharFilter(method="filter_site", help_text="Starts, ends or relays at this site.")
    route_type = filters.MultipleChoiceFilter(choices=RouteType.choices, distinct=False)
    method = filters.MultipleChoiceFilter(choices=TransferMethod.choices, distinct=False)
    state = filters.MultipleChoiceFilter(choices=RouteState.choices, distinct=False)

    class Meta:
        model = DataTransferRoute
        fields = ["active"]

    def filter_site(self, queryset, name, value):
        return queryset.filter(
            Q(origin_site__name=value) | Q(destination_site__name=value) | Q(relay_site__name=value)
        )


class DataTransferPackageFilter(JobFilterSet):
    site = filters.CharFilter(field_name="origin_location__site__name")
    site_id = IdFilter(field_name="origin_location__site_id")
    location = filters.CharFilter(field_name="origin_location__name")
    location_id = IdFilter(field_name="origin_location_id")
    raw_package_id = IdFilter(field_name="members__raw_package_id")

    class Meta:
        model = DataTransferPackage
        fields = ["name"]


class DataTransferPackageCopyFilter(CopyFilterSet):
    transfer_package = filters.CharFilter(field_name="transfer_package__name")
    transfer_package_id = IdFilter(field_name="transfer_package_id")

    class Meta:
        model = DataTransferPackageCopy
        fields = ["path"]


class DataTransferFilter(JobFilterSet):
    route = IdFilter(field_name="route_id")
    route_id = IdFilter(field_name="route_id")
    transfer_package = filters.CharFilter(field_name="transfer_package__name")
    transfer_package_id = IdFilter(field_name="transfer_package_id")
    origin_site = filters.CharFilter(field_name="origin_location__site__name")
    origin_site_id = IdFilter(field_name="origin_location__site_id")
    destination_site = filters.CharFilter(field_name="destination_location__site__name")
    destination_site_id = IdFilter(field_name="destination_location__site_id")
    site = filters.CharFilter(method="filter_site", help_text="Leaves from or arrives at this site.")
    origin_location_id = IdFilter(field_name="origin_location_id")
    destination_location_id = IdFilter(field_name="destination_location_id")
    location_id = IdFilter(method="filter_location", help_text="Leaves from or arrives at it.")
    method = filters.MultipleChoiceFilter(choices=TransferMethod.choices, distinct=False)

    class Meta:
        model = DataTransfer
        fields = ["hop"]

    def filter_site(self, queryset, name, value):
        return queryset.filter(Q(origin_location__site__name=value) | Q(destination_location__site__name=value))

    def filter_location(self, queryset, name, value):
        return queryset.filter(Q(origin_location_id=value) | Q(destination_location_id=value))


class DataTransferUnpackFilter(JobFilterSet):
    transfer = IdFilter(field_name="transfer_id")
    transfer_id = IdFilter(field_name="transfer_id")
    transfer_package_id = IdFilter(field_name="transfer__transfer_package_id")
    site = filters.CharFilter(field_name="transfer__destination_location__site__name")
    site_id = IdFilter(field_name="transfer__destination_location__site_id")
    location_id = IdFilter(field_name="transfer__destination_location_id")

    class Meta:
        model = DataTransferUnpack
        fields = []
