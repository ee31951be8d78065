"""Delete jobs over the API: read (workers: at their sites), retry and cancel (operators)."""

from django.db.models import Prefetch

from custody.api import filters
from custody.api.serializers import DeletionJobSerializer
from custody.models import DeletionItem, DeletionJob
from opsdb.api.views import JobViewSetMixin, OperatorJobActionsMixin, ReadOnlyViewSet


class DeletionJobViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = DeletionJob.objects.select_related("location__site").prefetch_related(
        Prefetch("items", queryset=DeletionItem.objects.order_by("pk")))
    serializer_class = DeletionJobSerializer
    filterset_class = filters.DeletionJobFilter
