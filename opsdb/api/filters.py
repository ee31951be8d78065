"""Filters of the catalogue endpoints: ``<fk>`` by natural key (name), ``<fk>_id`` by primary key."""

from datetime import UTC

import django_filters as filters
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef

from opsdb import numbers
from opsdb.choices import CopyStatus, JobKind, JobStatus, LocationType, LogLevel, StorageType
from opsdb.models import (
    DataLocation,
    DataTransferLog,
    Instrument,
    Observation,
    RawDataFile,
    RawDataFileCopy,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
)
from opsdb.registry import job_kinds

MAX_ID = numbers.MAX_ID


class IdFilter(filters.NumberFilter):
    """A primary key: an integer in the database's range (a larger one is a 400, not an overflow)."""

    field_class = numbers.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class UTCDateTimeField(filters.fields.IsoDateTimeField):
    """An ISO 8601 time, turned into UTC here: PostgreSQL refuses offsets Python accepts (e.g. -20:56)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValidationError("This time is out of range.", code="invalid") from None


class TimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class CreatedRangeFilterSet(filters.FilterSet):
    created_after = TimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = TimeFilter(field_name="created_at", lookup_expr="lt")


class JobFilterSet(CreatedRangeFilterSet):
    """What every leased job is filtered by."""

    # distinct=False on filters of a row's own column (they cannot repeat rows): DISTINCT over a
    # million-row table costs a sort of all of it.
    status = filters.MultipleChoiceFilter(choices=JobStatus.choices, distinct=False)
    worker = filters.CharFilter(field_name="lease_holder")
    next_attempt_before = TimeFilter(field_name="next_attempt_at", lookup_expr="lt")
    finished_after = TimeFilter(field_name="finished_at", lookup_expr="gte")
    finished_before = TimeFilter(field_name="finished_at", lookup_expr="lt")


class SiteFilter(CreatedRangeFilterSet):
    class Meta:
        model = Site
        fields = ["name"]


class DataLocationFilter(CreatedRangeFilterSet):
    site = filters.CharFilter(field_name="site__name")
    site_id = IdFilter(field_name="site_id")
    location_type = filters.MultipleChoiceFilter(choices=LocationType.choices, distinct=False)
    storage_type = filters.MultipleChoiceFilter(choices=StorageType.choices, distinct=False)

    class Meta:
        model = DataLocation
        fields = ["name", "active"]


class InstrumentFilter(filters.FilterSet):
    class Meta:
        model = Instrument
        fields = ["name"]


class ObservationFilter(filters.FilterSet):
    instrument = filters.CharFilter(field_name="instrument__name")
    instrument_id = IdFilter(field_name="instrument_id")
    target_name = filters.CharFilter(lookup_expr="icontains")
    start_after = TimeFilter(field_name="start_time", lookup_expr="gte")
    start_before = TimeFilter(field_name="start_time", lookup_expr="lt")

    class Meta:
        model = Observation
        fields = ["obs_id"]


class RawDataPackageFilter(CreatedRangeFilterSet):
    observation = filters.CharFilter(field_name="observation__obs_id")
    observation_id = IdFilter(field_name="observation_id")
    instrument = filters.CharFilter(field_name="observation__instrument__name")
    location_id = IdFilter(method="filter_present_at", help_text="Has a present copy at this location.")
    site = filters.CharFilter(method="filter_present_at", help_text="Has a present copy at this site.")
    site_id = IdFilter(method="filter_present_at", help_text="Has a present copy at this site.")

    class Meta:
        model = RawDataPackage
        fields = ["name"]

    def filter_present_at(self, queryset, name, value):
        lookup = {"location_id": "location_id", "site": "location__site__name", "site_id": "location__site_id"}[name]
        copies = RawDataPackageCopy.objects.filter(raw_package=OuterRef("pk"), status=CopyStatus.PRESENT,
                                                   **{lookup: value})
        return queryset.filter(Exists(copies))


class RawDataFileFilter(filters.FilterSet):
    package = filters.CharFilter(field_name="package__name")
    package_id = IdFilter(field_name="package_id")

    class Meta:
        model = RawDataFile
        fields = ["relative_path"]


class CopyFilterSet(CreatedRangeFilterSet):
    status = filters.MultipleChoiceFilter(choices=CopyStatus.choices, distinct=False)
    location = filters.CharFilter(field_name="location__name")
    location_id = IdFilter(field_name="location_id")
    site = filters.CharFilter(field_name="location__site__name")
    site_id = IdFilter(field_name="location__site_id")


class RawDataPackageCopyFilter(CopyFilterSet):
    raw_package = filters.CharFilter(field_name="raw_package__name")
    raw_package_id = IdFilter(field_name="raw_package_id")

    class Meta:
        model = RawDataPackageCopy
        fields = ["path"]


class RawDataFileCopyFilter(CopyFilterSet):
    raw_file_id = IdFilter(field_name="raw_file_id")
    raw_package = filters.CharFilter(field_name="raw_file__package__name")
    raw_package_id = IdFilter(field_name="raw_file__package_id")
    expires_before = TimeFilter(field_name="expires_at", lookup_expr="lt")

    class Meta:
        model = RawDataFileCopy
        fields = ["path"]


class DataTransferLogFilter(CreatedRangeFilterSet):
    kind = filters.ChoiceFilter(choices=JobKind.choices, method="filter_kind", help_text="The job's kind.")
    job_id = IdFilter(field_name="object_id")
    level = filters.MultipleChoiceFilter(choices=LogLevel.choices, distinct=False)

    class Meta:
        model = DataTransferLog
        fields = ["worker"]

    def filter_kind(self, queryset, name, value):
        handler = job_kinds.get(value)
        if handler is None:
            return queryset.none()
        return queryset.filter(content_type=ContentType.objects.get_for_model(handler.model))
