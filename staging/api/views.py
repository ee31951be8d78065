"""Scientists' staging requests over the API: create, list, read and cancel their own."""

from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django_fsm import TransitionNotAllowed
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from staging import selectors
from staging.api.filters import StagingJobFilter
from staging.api.serializers import StagingJobCreateSerializer, StagingJobSerializer
from staging.models import StagingJob, StagingJobPackage
from staging.services import staging_job_cancel, staging_job_create, staging_lifetime


class CanStage(permissions.BasePermission):
    """Scientists and operators: everything; workers: read only."""

    message = "Only scientists and operators can use staging requests."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS and selectors.is_worker(request.user):
            return True
        return selectors.can_stage(request.user)


class StagingJobViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        viewsets.GenericViewSet):
    """Staging requests: a scientist's own (operators and workers: all); others' are 404."""

    serializer_class = StagingJobSerializer
    lookup_value_regex = "[0-9]{1,18}"
    permission_classes = [permissions.IsAuthenticated, CanStage]
    filterset_class = StagingJobFilter
    ordering_fields = ["created_at", "updated_at", "id"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        items = StagingJobPackage.objects.select_related("raw_package", "source_location__site")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return StagingJob.objects.none()
        user = self.request.user
        # Workers read every request (they do them); scientists only their own.
        visible = StagingJob.objects.all() if selectors.is_worker(user) else selectors.staging_jobs_visible_to(user)
        jobs = selectors.with_progress(visible)
        return jobs.prefetch_related(Prefetch("items", queryset=items)).order_by("-created_at", "-id")

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
