"""Archive transfers (read-only) and staging jobs.

Staging jobs: operators and workers see all (a restricted worker those at its sites), a scientist
only their own. Creating and cancelling staging jobs is added here by the staging pages' API.
"""

from django.db.models import Prefetch

from opsdb.api.permissions import is_operator, is_worker
from opsdb.api.views import JobViewSetMixin, OperatorJobActionsMixin, ReadOnlyViewSet
from opsdb.choices import JobKind
from staging.api import filters, serializers
from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage
from transfers.api.views import JOB_ORDERING


class LongTermArchiveTransferViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    job_kind = JobKind.ARCHIVE
    site_field = "source_location__site_id"
    queryset = LongTermArchiveTransfer.objects.select_related("raw_package", "source_location__site")
    serializer_class = serializers.LongTermArchiveTransferSerializer
    filterset_class = filters.LongTermArchiveTransferFilter
    ordering_fields = JOB_ORDERING


class StagingJobViewSet(JobViewSetMixin, ReadOnlyViewSet):
    job_kind = JobKind.STAGE
    site_field = "destination_location__site_id"
    queryset = StagingJob.objects.select_related("owner").prefetch_related(
        Prefetch("items", queryset=StagingJobPackage.objects.select_related("raw_package"))
    )
    serializer_class = serializers.StagingJobSerializer
    filterset_class = filters.StagingJobFilter
    ordering_fields = JOB_ORDERING

    def get_queryset(self):
        queryset = super().get_queryset()
        user = self.request.user
        if is_operator(user) or is_worker(user):
            return queryset
        return queryset.filter(owner=user)  # scientists: their own requests, nobody else's
