import django_filters as filters

from custody.models import DeletionJob
from opsdb.api.filters import IdFilter, JobFilterSet


class DeletionJobFilter(JobFilterSet):
    site = filters.CharFilter(field_name="location__site__name")
    site_id = IdFilter(field_name="location__site_id")
    location_id = IdFilter(field_name="location_id")

    class Meta:
        model = DeletionJob
        fields = []
