"""Serializers of the catalogue: sites, locations, instruments, observations, raw data and its copies.

Writable ones (sites, locations) validate with the model's ``full_clean()``, as the admin does.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opsdb.api.exceptions import validation_error_body
from opsdb.api.fields import IntegerField, PrimaryKeyRelatedField
from opsdb.explain import attach_explanations, attach_raw_package_explanations, explanation_of
from opsdb.explanation import ExplanationCode
from opsdb.log_links import log_url
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

# Fields every leased job shows; the lease token is the worker's secret and never leaves the claim.
JOB_FIELDS = [
    "id", "status", "priority", "attempts", "next_attempt_at", "lease_holder", "lease_expires_at", "claimed_at",
    "heartbeat_at", "bytes_done", "resume_bytes", "resumed_from", "last_error", "log_path", "log_url", "finished_at",
    "created_at", "updated_at", "explanation",
]


class ExplanationSerializer(serializers.Serializer):
    """Why a job is where it is (``opsdb.explain``)."""

    code = serializers.ChoiceField(choices=ExplanationCode.choices, help_text="What it does or waits for.")
    message = serializers.CharField(help_text="The same in plain words, with times and figures.")
    since = serializers.DateTimeField(allow_null=True, help_text="When that situation started (null: unknown).")


class ExplainedListSerializer(serializers.ListSerializer):
    """A list of jobs whose explanations are computed together for the page (a fixed number of queries)."""

    def to_representation(self, data):
        jobs = data.all() if isinstance(data, models.manager.BaseManager) else data
        return super().to_representation(attach_explanations(jobs))


class JobSerializer(serializers.ModelSerializer):
    """A leased job with its ``explanation``; subclasses list ``JOB_FIELDS`` and inherit this ``Meta``."""

    explanation = serializers.SerializerMethodField(
        help_text="Why it is where it is: what it does, waits for, or what an operator must do."
    )

    class Meta:
        list_serializer_class = ExplainedListSerializer

    log_url = serializers.SerializerMethodField(
        help_text="A link to the log file at log_path (settings.LOG_URL_TEMPLATE); null when not configured."
    )

    @extend_schema_field(ExplanationSerializer)
    def get_explanation(self, job) -> dict:
        return ExplanationSerializer(explanation_of(job)).data

    def get_log_url(self, job) -> str | None:
        return log_url(job.log_path, kind=job.KIND, id=job.pk, worker=job.lease_holder) or None


class FullCleanMixin:
    """Run the model's ``full_clean()`` (field validators, ``clean()``, constraints) and report 400 field errors.

    Integers and related ids are read from ASCII digits only (``opsdb.numbers``).
    """

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        **{field: IntegerField for field in (models.IntegerField, models.BigIntegerField, models.SmallIntegerField,
                                             models.PositiveIntegerField, models.PositiveBigIntegerField,
                                             models.PositiveSmallIntegerField)},
    }
    serializer_related_field = PrimaryKeyRelatedField

    def validate(self, attrs):
        attrs = super().validate(attrs)
        instance = self.instance or self.Meta.model()
        for name, value in attrs.items():
            setattr(instance, name, value)
        try:
            instance.full_clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(validation_error_body(exc)) from None
        return attrs


class SiteSerializer(FullCleanMixin, serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "name", "title", "description", "created_at"]
        read_only_fields = ["created_at"]
        # full_clean() checks uniqueness with the admin's wording.
        extra_kwargs = {"name": {"validators": []}}


class DataLocationSerializer(FullCleanMixin, serializers.ModelSerializer):
    site_name = serializers.CharField(source="site.name", read_only=True)

    class Meta:
        model = DataLocation
        fields = ["id", "site", "site_name", "name", "location_type", "storage_type", "base_path", "host",
                  "capacity_bytes", "priority", "active", "created_at"]
        read_only_fields = ["created_at"]
        validators = []  # full_clean() checks the unique (site, name) constraint


class InstrumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Instrument
        fields = ["id", "name", "description"]


class ObservationSerializer(serializers.ModelSerializer):
    instrument_name = serializers.CharField(source="instrument.name", read_only=True)

    class Meta:
        model = Observation
        fields = ["id", "obs_id", "instrument", "instrument_name", "target_name", "start_time", "end_time"]


class RawPackageListSerializer(serializers.ListSerializer):
    """Raw packages whose explanations (waiting for a bundle) are computed for the page at once."""

    def to_representation(self, data):
        packages = data.all() if isinstance(data, models.manager.BaseManager) else data
        return super().to_representation(attach_raw_package_explanations(packages))


class RawDataPackageSerializer(serializers.ModelSerializer):
    obs_id = serializers.CharField(source="observation.obs_id", read_only=True)
    explanation = serializers.SerializerMethodField(
        help_text="Why it is in no transfer package yet (waiting at a buffer for more data); null otherwise."
    )

    class Meta:
        model = RawDataPackage
        fields = ["id", "name", "observation", "obs_id", "size", "checksum", "checksum_algorithm", "created_at",
                  "explanation"]
        list_serializer_class = RawPackageListSerializer

    @extend_schema_field(ExplanationSerializer(allow_null=True))
    def get_explanation(self, package: RawDataPackage) -> dict | None:
        if not hasattr(package, "explanation"):
            attach_raw_package_explanations([package])
        return ExplanationSerializer(package.explanation).data if package.explanation else None


class RawDataFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = RawDataFile
        fields = ["id", "package", "relative_path", "size", "checksum", "checksum_algorithm"]


COPY_FIELDS = ["id", "location", "location_name", "site_name", "status", "path", "checksum_verified", "verified_at",
               "created_at", "updated_at"]


class CopySerializer(serializers.ModelSerializer):
    location_name = serializers.CharField(source="location.name", read_only=True)
    site_name = serializers.CharField(source="location.site.name", read_only=True)


class RawDataPackageCopySerializer(CopySerializer):
    raw_package_name = serializers.CharField(source="raw_package.name", read_only=True)

    class Meta:
        model = RawDataPackageCopy
        fields = ["raw_package", "raw_package_name", *COPY_FIELDS]


class RawDataFileCopySerializer(CopySerializer):
    relative_path = serializers.CharField(source="raw_file.relative_path", read_only=True)

    class Meta:
        model = RawDataFileCopy
        fields = ["raw_file", "relative_path", *COPY_FIELDS, "expires_at"]


class DataTransferLogSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField()
    log_url = serializers.SerializerMethodField()

    class Meta:
        model = DataTransferLog
        fields = ["id", "kind", "object_id", "level", "message", "log_path", "log_url", "worker", "attempt",
                  "created_at"]

    def get_kind(self, log: DataTransferLog) -> str:
        return getattr(log.content_type.model_class(), "KIND", log.content_type.model)

    def get_log_url(self, log: DataTransferLog) -> str | None:
        """A link to the log file (settings.LOG_URL_TEMPLATE); null when not configured."""
        return log_url(log.log_path, kind=self.get_kind(log), id=log.object_id, worker=log.worker) or None


class CustodyCopySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    site = serializers.CharField()
    location = serializers.CharField(help_text="site:name")
    location_type = serializers.CharField()
    status = serializers.CharField()
    path = serializers.CharField(help_text="Relative to the location's base path.")
    checksum_verified = serializers.CharField()
    verified_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    safe = serializers.BooleanField(help_text="PRESENT in a long-term archive with the package's verified checksum.")


class CustodyStagedSerializer(serializers.Serializer):
    site = serializers.CharField()
    location = serializers.CharField()
    present_files = serializers.IntegerField()
    total_files = serializers.IntegerField()


class CustodyWorkSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    status = serializers.CharField()
    site = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()


class CustodySerializer(serializers.Serializer):
    """Where a raw package is: its copies, how safe it is, and the work pending on it."""

    raw_package = RawDataPackageSerializer(source="package")
    copies = CustodyCopySerializer(many=True)
    staged = CustodyStagedSerializer(many=True, help_text="Its files staged at processing locations.")
    safe_archive_copies = serializers.IntegerField()
    safe_sites = serializers.ListField(child=serializers.CharField())
    required_archive_sites = serializers.ListField(
        child=serializers.CharField(), help_text="Sites whose long-term archive its routes deliver it to."
    )
    min_archive_copies = serializers.IntegerField(help_text="Sites with a safe copy needed at least.")
    is_safe = serializers.BooleanField()
    safe_since = serializers.DateTimeField(allow_null=True)
    time_to_safety_seconds = serializers.SerializerMethodField(
        help_text="Registration → all required archive copies verified; null while not safe."
    )
    waiting_for = serializers.ListField(child=serializers.CharField())
    pending_work = CustodyWorkSerializer(many=True, help_text="Its jobs pending, active or failed.")

    def get_time_to_safety_seconds(self, custody) -> float | None:
        delta = custody.time_to_safety
        return None if delta is None else delta.total_seconds()
