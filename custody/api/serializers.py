from rest_framework import serializers

from custody.models import DeletionItem, DeletionJob
from opsdb.api.serializers import JOB_FIELDS, JobSerializer


class DeletionItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeletionItem
        fields = ["id", "raw_package_copy", "transfer_package_copy", "file_copy", "path", "size", "outcome", "error"]
        read_only_fields = fields


class DeletionJobSerializer(JobSerializer):
    site_name = serializers.CharField(source="location.site.name", read_only=True)
    copies = DeletionItemSerializer(source="items", many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        model = DeletionJob
        fields = [*JOB_FIELDS, "location", "site_name", "reason", "size", "copies"]
