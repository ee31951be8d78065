"""Serializers of archive transfers and staging jobs."""

from rest_framework import serializers

from opsdb.api.serializers import JOB_FIELDS
from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage


class LongTermArchiveTransferSerializer(serializers.ModelSerializer):
    raw_package_name = serializers.CharField(source="raw_package.name", read_only=True)
    site_name = serializers.CharField(source="source_location.site.name", read_only=True)

    class Meta:
        model = LongTermArchiveTransfer
        fields = [*JOB_FIELDS, "raw_package", "raw_package_name", "source_location", "destination_location",
                  "site_name", "requires_intervention"]


class StagingJobPackageSerializer(serializers.ModelSerializer):
    raw_package_name = serializers.CharField(source="raw_package.name", read_only=True)

    class Meta:
        model = StagingJobPackage
        fields = ["raw_package", "raw_package_name", "source_location", "state", "bytes_staged", "staged_at", "error"]


class StagingJobSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    items = StagingJobPackageSerializer(many=True, read_only=True)

    class Meta:
        model = StagingJob
        fields = [*JOB_FIELDS, "owner", "destination_location", "note", "lifetime", "expires_at", "cleaned_at",
                  "items"]
