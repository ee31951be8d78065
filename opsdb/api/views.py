"""Read endpoints of the catalogue; operators also write sites and locations."""

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from opsdb import services
from opsdb.api import filters, serializers
from opsdb.api.permissions import IsOperator, ModelRolePermissions, allowed_site_ids
from opsdb.custody import raw_package_custody
from opsdb.models import (
    REASON_MAX_LENGTH,
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


class RoleViewSetMixin:
    """Model permissions per role (``opsdb.roles``); ``view`` needed to read."""

    permission_classes = [IsAuthenticated, ModelRolePermissions]
    ordering_fields = ["id", "created_at"]
    # ASCII digits within 64 bits: "/sites/١/" is a 404, not site 1 (``int()`` reads any script's digits).
    lookup_value_regex = "[0-9]{1,18}"


class ReadOnlyViewSet(RoleViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class WritableViewSet(RoleViewSetMixin, viewsets.ModelViewSet):
    pass


class JobViewSetMixin:
    """A restricted worker only sees jobs at its sites, as it only claims them (the kind's ``at_sites``)."""

    ordering_fields = ["id", "created_at", "priority", "status", "next_attempt_at", "finished_at"]

    def get_queryset(self):
        queryset = super().get_queryset()
        site_ids = allowed_site_ids(self.request.user)
        if site_ids is None:
            return queryset
        return job_kinds.for_model(queryset.model).at_sites(queryset, site_ids)


REASON = inline_serializer(
    "TransitionReason", {"reason": drf_serializers.CharField(required=False, max_length=REASON_MAX_LENGTH)}
)


def request_reason(request, *, default: str | None = "") -> str | Response:
    """The request's ``reason``: a text of at most REASON_MAX_LENGTH characters, else a 400 answer.

    ``default`` is what a missing reason means (None: a reason is required).
    """
    reason = request.data.get("reason", default) if isinstance(request.data, dict) else None
    if not isinstance(reason, str) or len(reason) > REASON_MAX_LENGTH:
        return Response({"reason": [f"Give a short text (at most {REASON_MAX_LENGTH} characters)."]}, status=400)
    return reason


class OperatorJobActionsMixin:
    """An operator's retry (FAILED → PENDING) and cancel (PENDING/FAILED → CANCELLED); 409 with the status otherwise."""

    def _transition(self, request, service):
        job = self.get_object()
        reason = request_reason(request)
        if isinstance(reason, Response):
            return reason
        service(job=job, by=request.user, reason=reason)
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(request=REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def retry(self, request, pk=None):
        return self._transition(request, services.job_retry)

    @extend_schema(request=REASON)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsOperator])
    def cancel(self, request, pk=None):
        return self._transition(request, services.job_cancel)


class SiteViewSet(WritableViewSet):
    queryset = Site.objects.all()
    serializer_class = serializers.SiteSerializer
    filterset_class = filters.SiteFilter
    ordering_fields = ["id", "name", "created_at"]


class DataLocationViewSet(WritableViewSet):
    queryset = DataLocation.objects.select_related("site")
    serializer_class = serializers.DataLocationSerializer
    filterset_class = filters.DataLocationFilter
    ordering_fields = ["id", "name", "priority", "created_at"]


class InstrumentViewSet(ReadOnlyViewSet):
    queryset = Instrument.objects.all()
    serializer_class = serializers.InstrumentSerializer
    filterset_class = filters.InstrumentFilter
    ordering_fields = ["id", "name"]


class ObservationViewSet(ReadOnlyViewSet):
    queryset = Observation.objects.select_related("instrument")
    serializer_class = serializers.ObservationSerializer
    filterset_class = filters.ObservationFilter
    ordering_fields = ["id", "obs_id", "start_time"]


class RawDataPackageViewSet(ReadOnlyViewSet):
    queryset = RawDataPackage.objects.select_related("observation")
    serializer_class = serializers.RawDataPackageSerializer
    filterset_class = filters.RawDataPackageFilter
    ordering_fields = ["id", "name", "size", "created_at"]

    @extend_schema(
        responses={200: serializers.CustodySerializer}, filters=False,
        description="Where is this package: every copy (location, status, path, verified checksum and time), "
        "the number of safe archive copies, the archives it must reach, its time to safety, and the work "
        "pending on it (the jobs the caller may see).",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def custody(self, request, pk=None):
        package = self.get_object()
        custody = raw_package_custody(package, visible=lambda handler, jobs: visible_jobs(request.user, handler, jobs))
        return Response(serializers.CustodySerializer(custody).data)


def visible_jobs(user, handler, jobs):
    """The jobs of one kind ``user`` may read, as its read endpoint shows them; None: none of that kind."""
    model = handler.model
    if not user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}"):
        return None
    jobs = handler.visible_to(jobs, user)
    site_ids = allowed_site_ids(user)
    return jobs if site_ids is None else handler.at_sites(jobs, site_ids)


class RawDataFileViewSet(ReadOnlyViewSet):
    queryset = RawDataFile.objects.all()
    serializer_class = serializers.RawDataFileSerializer
    filterset_class = filters.RawDataFileFilter
    ordering_fields = ["id", "relative_path", "size"]


class RawDataPackageCopyViewSet(ReadOnlyViewSet):
    queryset = RawDataPackageCopy.objects.select_related("raw_package", "location__site")
    serializer_class = serializers.RawDataPackageCopySerializer
    filterset_class = filters.RawDataPackageCopyFilter


class RawDataFileCopyViewSet(ReadOnlyViewSet):
    queryset = RawDataFileCopy.objects.select_related("raw_file", "location__site")
    serializer_class = serializers.RawDataFileCopySerializer
    filterset_class = filters.RawDataFileCopyFilter


class DataTransferLogViewSet(ReadOnlyViewSet):
    queryset = DataTransferLog.objects.select_related("content_type")
    serializer_class = serializers.DataTransferLogSerializer
    filterset_class = filters.DataTransferLogFilter

    def get_queryset(self):
        """A restricted worker sees the log lines of the jobs it may see: one subquery per job kind."""
        queryset = super().get_queryset()
        site_ids = allowed_site_ids(self.request.user)
        if site_ids is None:
            return queryset
        visible = Q(pk__in=[])
        for handler in job_kinds:
            jobs = handler.at_sites(handler.model.objects.all(), site_ids).values("pk")
            visible |= Q(content_type=ContentType.objects.get_for_model(handler.model), object_id__in=jobs)
        return queryset.filter(visible)
