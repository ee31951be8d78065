import django_filters

from opsdb.choices import JobStatus
from opsdb.models import DataLocation
from staging.models import StagingJob


class StagingJobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    destination_location = django_filters.ModelChoiceFilter(queryset=DataLocation.objects.all())
    destination_location_id = django_filters.NumberFilter(field_name="destination_location_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = StagingJob
        fields = ["status", "destination_location", "destination_location_id"]
