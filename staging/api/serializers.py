"""Serializers of archive transfers and staging jobs."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opsdb.api.fields import IntegerField
from opsdb.api.serializers import JOB_FIELDS, ExplainedListSerializer, JobSerializer
from opsdb.models import DataLocation, RawDataPackage
from opsdb.numbers import parse_id
from staging.explain import plain_error, status_words
from staging.models import FixityCheck, LongTermArchiveTransfer, StagingJob, StagingJobPackage
from staging.selectors import DONE_ITEM_STATES, absolute_path


class LongTermArchiveTransferSerializer(JobSerializer):
    raw_package_name = serializers.CharField(source="raw_package.name", read_only=True)
    site_name = serializers.CharField(source="source_location.site.name", read_only=True)

    class Meta(JobSerializer.Meta):
        model = LongTermArchiveTransfer
        fields = [*JOB_FIELDS, "raw_package", "raw_package_name", "source_location", "destination_location",
                  "site_name", "requires_intervention", "repair_of", "method"]


class FixityCheckSerializer(JobSerializer):
    raw_package = serializers.IntegerField(source="copy.raw_package_id", read_only=True)
    raw_package_name = serializers.CharField(source="copy.raw_package.name", read_only=True)
    site_name = serializers.CharField(source="location.site.name", read_only=True)

    class Meta(JobSerializer.Meta):
        model = FixityCheck
        fields = [*JOB_FIELDS, "copy", "raw_package", "raw_package_name", "location", "site_name", "size", "recheck",
                  "outcome", "checksum_found"]




class StagingJobPackageSerializer(serializers.ModelSerializer):
    raw_package_id = serializers.IntegerField(source="raw_package.pk", read_only=True)
    name = serializers.CharField(source="raw_package.name", read_only=True)
    size = serializers.IntegerField(source="raw_package.size", read_only=True)
    source_location = serializers.StringRelatedField(read_only=True)

    class Meta:
        model = StagingJobPackage
        fields = ["raw_package_id", "name", "size", "state", "bytes_staged", "staged_at", "source_location", "error"]
        read_only_fields = fields


# A staged package as the API lists it: key → the column it is read from.
PACKAGE_COLUMNS = {
    "raw_package_id": "raw_package_id", "name": "raw_package__name", "size": "raw_package__size", "state": "state",
    "bytes_staged": "bytes_staged", "staged_at": "staged_at", "source_location": None, "error": "error",
}
LOCATION_COLUMNS = ("source_location__site__name", "source_location__name")
STAGED_AT = serializers.DateTimeField()


def package_rows(job_ids) -> dict[int, list[dict]]:
    """The packages of these jobs as the API lists them, in one query, as plain rows.

    A page of 100 staging jobs lists thousands of packages: built as model instances (package,
    location, site) and serialized field by field, they took most of the response's time; these
    rows are the same JSON (``StagingJobPackageSerializer`` describes it).
    """
    columns = [column for column in PACKAGE_COLUMNS.values() if column]
    found: dict[int, list[dict]] = {job_id: [] for job_id in job_ids}
    items = (StagingJobPackage.objects.filter(job_id__in=found).order_by("job_id", "raw_package_id")
             .values_list("job_id", *columns, *LOCATION_COLUMNS))
    for job_id, *values, site, location in items:
        row = dict(zip((key for key, column in PACKAGE_COLUMNS.items() if column), values, strict=True))
        row["staged_at"] = STAGED_AT.to_representation(row["staged_at"]) if row["staged_at"] else None
        row["source_location"] = f"{site}:{location}" if location is not None else None
        found[job_id].append({key: row[key] for key in PACKAGE_COLUMNS})
    return found


class StagingJobListSerializer(ExplainedListSerializer):
    """A page of staging jobs whose packages are read together (one query)."""

    def to_representation(self, data):
        jobs = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        rows = package_rows([job.pk for job in jobs])
        for job in jobs:
            job.package_rows = rows[job.pk]
        return super().to_representation(jobs)


class StagingJobSerializer(JobSerializer):
    """A staging request as its owner sees it: state in words, progress, packages."""

    owner = serializers.CharField(source="owner.get_username", read_only=True)
    destination_location = serializers.StringRelatedField(read_only=True)
    destination_location_id = serializers.IntegerField(read_only=True)
    destination_path = serializers.SerializerMethodField()
    status_text = serializers.SerializerMethodField()
    error_text = serializers.SerializerMethodField()
    lifetime_days = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    packages = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        model = StagingJob
        list_serializer_class = StagingJobListSerializer
        fields = [
            "id", "owner", "status", "status_text", "explanation", "destination_location", "destination_location_id",
            "destination_path", "note", "lifetime_days", "expires_at", "attempts", "last_error", "error_text",
            "created_at", "updated_at", "finished_at", "progress", "packages",
        ]
        read_only_fields = fields

    def get_destination_path(self, job: StagingJob) -> str:
        return absolute_path(job.destination_location, "staged/")

    def get_status_text(self, job: StagingJob) -> str:
        return status_words(job.status)

    def get_error_text(self, job: StagingJob) -> str:
        return plain_error(job.last_error)

    def get_lifetime_days(self, job: StagingJob) -> float:
        return job.lifetime / timedelta(days=1)

    @extend_schema_field(StagingJobPackageSerializer(many=True))
    def get_packages(self, job: StagingJob) -> list[dict]:
        if not hasattr(job, "package_rows"):  # one job on its own (read, created)
            job.package_rows = package_rows([job.pk])[job.pk]
        return job.package_rows

    def get_progress(self, job: StagingJob) -> dict:
        """Counted from the job's packages, which the response lists anyway (read with the page)."""
        items = self.get_packages(job)
        done = [item for item in items if item["state"] in DONE_ITEM_STATES]
        return {"packages_total": len(items), "packages_done": len(done),
                "bytes_total": sum(item["size"] for item in items),
                "bytes_done": sum(item["size"] for item in done)}


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "example": "cologne:processing"}]})
class LocationRefField(serializers.Field):
    """A location by id or as "site:name"."""

    default_error_messages = {"unknown": "No location {value!r}: give its id or site:name."}

    def to_internal_value(self, value):
        locations = DataLocation.objects.select_related("site")
        if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
            pk = parse_id(value)
            found = locations.filter(pk=pk).first() if pk is not None else None
        elif isinstance(value, str) and ":" in value:
            site, name = value.split(":", 1)
            found = locations.filter(site__name=site, name=name).first()
        else:
            found = None
        if found is None:
            self.fail("unknown", value=value)
        return found

    def to_representation(self, value):
        return str(value)


class StagingJobCreateSerializer(serializers.Serializer):
    """What a scientist sends to request staging; the service does the domain checks."""

    raw_packages = serializers.ListField(
        child=serializers.CharField(max_length=255), allow_empty=True,
        help_text="Raw package ids or names.",
    )
    destination_location = LocationRefField(help_text="A PROCESSING location: id or site:name.")
    lifetime_days = IntegerField(required=False, allow_null=True)

    def validate_lifetime_days(self, days: int | None) -> int | None:
        # Past the maximum here already: a huge number would overflow a timedelta.
        if days is not None and days < 1:
            raise serializers.ValidationError("The lifetime must be at least one day.")
        if days is not None and days > settings.STAGING_MAX_LIFETIME_DAYS:
            raise serializers.ValidationError(f"The lifetime can be at most {settings.STAGING_MAX_LIFETIME_DAYS} days.")
        return days
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate_raw_packages(self, refs: list[str]) -> list[RawDataPackage]:
        limit = settings.STAGING_SELECTION_MAX
        if len(refs) > limit:
            raise serializers.ValidationError(f"At most {limit} packages per request.")
        ids = {pk for pk in map(parse_id, refs) if pk is not None}
        names = {r for r in refs if parse_id(r) is None}
        found = list(RawDataPackage.objects.filter(Q(pk__in=ids) | Q(name__in=names)))
        known = {str(p.pk) for p in found} | {p.name for p in found}
        unknown = [r for r in refs if r not in known]
        if unknown:
            raise serializers.ValidationError(f"Unknown packages: {', '.join(unknown[:10])}.")
        return found
