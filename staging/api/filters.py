"""Filters of archive transfers and staging jobs."""

import django_filters as filters

from opsdb.api.filters import IdFilter, JobFilterSet
from staging.models import FixityCheck, LongTermArchiveTransfer, StagingJob


class LongTermArchiveTransferFilter(JobFilterSet):
    raw_package = filters.CharFilter(field_name="raw_package__name")
    raw_package_id = IdFilter(field_name="raw_package_id")
    site = filters.CharFilter(field_name="source_location__site__name")
    site_id = IdFilter(field_name="source_location__site_id")
    source_location_id = IdFilter(field_name="source_location_id")
    destination_location_id = IdFilter(field_name="destination_location_id")
    location_id = IdFilter(field_name="destination_location_id", help_text="The archive location.")

    class Meta:
        model = LongTermArchiveTransfer
        fields = ["requires_intervention"]

    repair = filters.BooleanFilter(field_name="repair_of", lookup_expr="isnull", exclude=True,
                                   help_text="Only repairs of copies an audit found bad (true) or none (false).")


class StagingJobFilter(JobFilterSet):
    owner = filters.CharFilter(field_name="owner__username")
    owner_id = IdFilter(field_name="owner_id")
    site = filters.CharFilter(field_name="destination_location__site__name")
    site_id = IdFilter(field_name="destination_location__site_id")
    location_id = IdFilter(field_name="destination_location_id")
    destination_location_id = IdFilter(field_name="destination_location_id")

    class Meta:
        model = StagingJob
        fields = []


class FixityCheckFilter(JobFilterSet):
    raw_package = filters.CharFilter(field_name="copy__raw_package__name")
    raw_package_id = IdFilter(field_name="copy__raw_package_id")
    copy_id = IdFilter(field_name="copy_id")
    site = filters.CharFilter(field_name="location__site__name")
    site_id = IdFilter(field_name="location__site_id")
    location_id = IdFilter(field_name="location_id")

    class Meta:
        model = FixityCheck
        fields = ["outcome", "recheck"]
