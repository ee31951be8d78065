"""Handler of the job kind ``verify``: re-read one long-term archive copy and report its checksum."""

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from opsdb.api.fields import ChecksumField
from opsdb.choices import JobKind
from opsdb.work import JobKindHandler, location_payload
from staging.fixity import fixity_check_record
from staging.models import FixityCheck


class VerifyResult(serializers.Serializer):
    """``complete`` of a verify job: the checksum read back, or ``missing`` when there is no file."""

    checksum = ChecksumField(required=False)
    missing = serializers.BooleanField(default=False)

    def validate(self, attrs):
        if attrs["missing"] == bool(attrs.get("checksum")):
            raise serializers.ValidationError({"checksum": ["Give the checksum read back, or missing: true "
                                                            "(not both)."]})
        return attrs


class VerifyHandler(JobKindHandler):
    """Verify jobs are *at* the archive copy's site; the business rule is ``staging.fixity``."""

    kind = JobKind.VERIFY
    model = FixityCheck
    result_serializer = VerifyResult
    result_related = ("copy__raw_package",)
    attention_label = "Failed fixity checks"
    site_field = "location__site"
    size_field = "size"

    def queryset(self) -> QuerySet:
        return FixityCheck.objects.select_related("copy__raw_package", "location__site")

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(copy__raw_package_id__in=package_ids).select_related("location__site")

    def site_of(self, job: FixityCheck):
        return job.location.site

    def size_of(self, job: FixityCheck) -> int | None:
        return job.size

    def payload(self, job: FixityCheck) -> dict[str, Any]:
        raw = job.copy.raw_package
        return {
            "raw_package": {"id": raw.pk, "name": raw.name, "size": raw.size, "checksum": raw.checksum,
                            "checksum_algorithm": raw.checksum_algorithm},
            "copy": {"id": job.copy_id, "location": location_payload(job.location), "path": job.copy.path},
            "recheck": job.recheck,
        }

    def apply_result(self, job: FixityCheck, data: dict[str, Any]) -> None:
        fixity_check_record(job=job, checksum=data.get("checksum", ""), missing=data["missing"])
