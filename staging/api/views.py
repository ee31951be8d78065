"""Scientists' staging requests over the API: create, list, read and cancel their own."""

from django.core.exceptions import ValidationError
from django_fsm import TransitionNotAllowed
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from opsdb.api.views import JobViewSetMixin, OperatorJobActionsMixin, ReadOnlyViewSet
from opsdb.roles import can_stage, is_operator, is_worker
from staging.api import filters
from staging.api.filters import StagingJobFilter
from staging.api.serializers import (
    FixityCheckSerializer,
    LongTermArchiveTransferSerializer,
    StagingJobCreateSerializer,
    StagingJobSerializer,
)
from staging.models import FixityCheck, LongTermArchiveTransfer, StagingJob
from staging.services import staging_job_cancel, staging_job_create, staging_lifetime


class LongTermArchiveTransferViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = LongTermArchiveTransfer.objects.select_related("raw_package", "source_location__site")
    serializer_class = LongTermArchiveTransferSerializer
    filterset_class = filters.LongTermArchiveTransferFilter


class FixityCheckViewSet(OperatorJobActionsMixin, JobViewSetMixin, ReadOnlyViewSet):
    queryset = FixityCheck.objects.select_related("copy__raw_package", "location__site")
    serializer_class = FixityCheckSerializer
    filterset_class = filters.FixityCheckFilter


class CanStage(permissions.BasePermission):
    """Scientists and operators: everything; workers: read (the jobs at their sites)."""

    message = "Only scientists and operators can use staging requests."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS and is_worker(request.user):
            return True
        return can_stage(request.user)


class StagingJobViewSet(JobViewSetMixin, mixins.CreateModelMixin, mixins.ListModelMixin,
                        mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Staging requests: a scientist's own (operators, workers at their sites: all); others' are 404."""


    serializer_class = StagingJobSerializer
    lookup_value_regex = "[0-9]{1,18}"
    permission_classes = [permissions.IsAuthenticated, CanStage]
    filterset_class = StagingJobFilter
    ordering = ["-created_at", "-id"]

    queryset = StagingJob.objects.all()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return StagingJob.objects.none()
        user = self.request.user
        jobs = super().get_queryset()  # JobViewSetMixin: a restricted worker sees its sites' jobs
        if not (is_operator(user) or is_worker(user)):
            jobs = jobs.filter(owner=user)  # scientists: their own requests, nobody else's
        # The packages (and the progress counted from them) are read by the serializer, for the page at once.
        return jobs.select_related("owner", "destination_location__site").order_by("-created_at", "-id")

    @extend_schema(request=StagingJobCreateSerializer, responses={201: StagingJobSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        incoming = StagingJobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        try:
            job = staging_job_create(
                owner=request.user, raw_packages=data["raw_packages"],
                destination_location=data["destination_location"],
                lifetime=staging_lifetime(data.get("lifetime_days")), note=data.get("note", ""),
            )
        except ValidationError as refused:
            raise DRFValidationError(_api_errors(refused)) from refused
        job = self.get_queryset().get(pk=job.pk)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: StagingJobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        job = self.get_object()
        try:
            staging_job_cancel(job=job, by=request.user)
        except TransitionNotAllowed as refused:
            job.refresh_from_db(fields=["status"])
            return Response({"detail": str(refused), "status": job.status}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)


def _api_errors(error: ValidationError) -> dict:
    """Service field names to the API's (lifetime → lifetime_days)."""
    renamed = {"lifetime": "lifetime_days"}
    return {renamed.get(field, field): messages for field, messages in error.message_dict.items()}
