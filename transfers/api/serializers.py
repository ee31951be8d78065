"""Serializers of routes (writable by operators, validated as in the admin), bundles and transfers."""

from rest_framework import serializers

from opsdb.api.serializers import JOB_FIELDS, FullCleanMixin, JobSerializer
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferRoute,
    DataTransferUnpack,
)


class DataTransferRouteSerializer(FullCleanMixin, serializers.ModelSerializer):
    class Meta:
        model = DataTransferRoute
        fields = ["id", "origin_site", "destination_site", "route_type", "method", "relay_site", "origin_location",
                  "destination_location", "active", "max_concurrent", "bundle_target_size", "bundle_max_wait",
                  "allow_relay_fallback", "state", "state_reason", "state_since", "state_by", "consecutive_failures",
                  "cooldown_until", "probe_transfer", "created_at", "updated_at"]
        # The state changes only through pause/resume (operators) and the route-health rules.
        read_only_fields = ["state", "state_reason", "state_since", "state_by", "consecutive_failures",
                            "cooldown_until", "probe_transfer", "created_at", "updated_at"]
        validators = []  # full_clean() checks the unique constraints, with the admin's messages


class DataTransferPackageSerializer(JobSerializer):
    site_name = serializers.CharField(source="origin_location.site.name", read_only=True)

    class Meta(JobSerializer.Meta):
        model = DataTransferPackage
        fields = [*JOB_FIELDS, "name", "origin_location", "site_name", "payload_size", "target_size", "size",
                  "checksum", "checksum_algorithm", "archive_path"]


class DataTransferPackageCopySerializer(serializers.ModelSerializer):
    class Meta:
        model = DataTransferPackageCopy
        fields = ["id", "transfer_package", "location", "status", "path", "checksum_verified", "verified_at",
                  "created_at", "updated_at"]


class DataTransferSerializer(JobSerializer):
    transfer_package_name = serializers.CharField(source="transfer_package.name", read_only=True)
    origin_site = serializers.CharField(source="origin_location.site.name", read_only=True)
    destination_site = serializers.CharField(source="destination_location.site.name", read_only=True)

    class Meta(JobSerializer.Meta):
        model = DataTransfer
        fields = [*JOB_FIELDS, "transfer_package", "transfer_package_name", "route", "origin_location",
                  "origin_site", "destination_location", "destination_site", "method", "hop", "previous",
                  "destination_path"]


class DataTransferUnpackSerializer(JobSerializer):
    id = serializers.IntegerField(source="pk", read_only=True, help_text="The transfer's id.")

    class Meta(JobSerializer.Meta):
        model = DataTransferUnpack
        fields = [*JOB_FIELDS, "transfer"]
