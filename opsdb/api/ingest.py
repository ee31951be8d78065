"""``POST /api/v1/ingest/raw-packages/``: register a raw package, its observation, files and archive copy."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from opsdb.api.exceptions import conflict
from opsdb.api.fields import ChecksumField, FileNameField, IntegerField, RelativePathField
from opsdb.api.parsers import JSONParser
from opsdb.api.permissions import IsWorker, allowed_site_ids
from opsdb.api.serializers import RawDataFileSerializer, RawDataPackageSerializer
from opsdb.api.work import validated
from opsdb.choices import ChecksumAlgorithm
from opsdb.ingest import IngestConflict, ObservationInfo, raw_package_ingest
from opsdb.models import DataLocation, Instrument, Observation, RawDataFile, RawDataPackage

BIG = 2**63 - 1


class IngestObservation(serializers.Serializer):
    obs_id = serializers.CharField(max_length=Observation._meta.get_field("obs_id").max_length)
    instrument = serializers.CharField(max_length=Instrument._meta.get_field("name").max_length, required=False)
    target_name = serializers.CharField(max_length=200, required=False)
    start_time = serializers.DateTimeField(required=False)
    end_time = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if attrs.get("start_time") and attrs.get("end_time") and attrs["end_time"] < attrs["start_time"]:
            raise serializers.ValidationError({"end_time": _("An observation cannot end before it starts.")})
        return attrs


class IngestFile(serializers.Serializer):
    relative_path = RelativePathField(max_length=RawDataFile._meta.get_field("relative_path").max_length)
    size = IntegerField(min_value=0, max_value=BIG)
    checksum = ChecksumField()
    checksum_algorithm = serializers.ChoiceField(choices=ChecksumAlgorithm.choices, default=ChecksumAlgorithm.SHA256)


class IngestLocation(serializers.Serializer):
    site = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=100)


class RawPackageIngest(serializers.Serializer):
    name = FileNameField(max_length=RawDataPackage._meta.get_field("name").max_length)
    size = IntegerField(min_value=0, max_value=BIG)
    checksum = ChecksumField()
    checksum_algorithm = serializers.ChoiceField(choices=ChecksumAlgorithm.choices, default=ChecksumAlgorithm.SHA256)
    observation = IngestObservation()
    files = IngestFile(many=True, max_length=100000)
    location = IngestLocation(required=False, help_text="The site and location name of the archive's copy...")
    location_id = IntegerField(min_value=1, max_value=BIG, required=False, help_text="...or its id.")
    path = RelativePathField(required=False, help_text="Of the archive at the location; default raw/<name>.")

    def validate_files(self, files):
        paths = [f["relative_path"] for f in files]
        if len(paths) != len(set(paths)):
            raise serializers.ValidationError("Each file's relative_path must be unique within the package.")
        return files

    def validate(self, attrs):
        attrs["location"] = self._location(attrs.get("location"), attrs.pop("location_id", None))
        return attrs

    @staticmethod
    def _location(by_name, location_id) -> DataLocation:
        if (by_name is None) == (location_id is None):
            raise serializers.ValidationError({"location": "Give either location (site and name) or location_id."})
        locations = DataLocation.objects.select_related("site")
        if location_id is not None:
            location = locations.filter(pk=location_id).first()
        else:
            location = locations.filter(site__name=by_name["site"], name=by_name["name"]).first()
        field = "location_id" if location_id is not None else "location"
        if location is None:
            raise serializers.ValidationError({field: "No such location."})
        if not location.active:
            raise serializers.ValidationError({field: f"{location} is not active."})
        return location


class IngestedPackage(RawDataPackageSerializer):
    files = RawDataFileSerializer(many=True, read_only=True)

    class Meta(RawDataPackageSerializer.Meta):
        fields = [*RawDataPackageSerializer.Meta.fields, "files"]


class RawPackageIngestView(APIView):
    permission_classes = [IsAuthenticated, IsWorker]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="ingest_raw_package", request=RawPackageIngest,
        responses={201: IngestedPackage, 200: IngestedPackage, 400: OpenApiResponse(description="Field errors."),
                   409: OpenApiResponse(description="Same name, other checksum (or other instrument).")},
        description="Register a raw data package with its observation (created when new), files and the location "
        "of its archive, atomically. The same package again answers 200 and changes nothing.",
    )
    def post(self, request):
        data = validated(RawPackageIngest, request)
        allowed = allowed_site_ids(request.user)
        if allowed is not None and data["location"].site_id not in allowed:
            raise PermissionDenied(f"This worker may not register data at {data['location'].site.name}.")
        observation = data["observation"]
        if not Observation.objects.filter(obs_id=observation["obs_id"]).exists():
            missing = [f for f in ("instrument", "target_name", "start_time", "end_time") if f not in observation]
            if missing:
                return Response({"observation": {f: ["Required for a new observation."] for f in missing}},
                                status=status.HTTP_400_BAD_REQUEST)
        try:
            package, created = raw_package_ingest(
                name=data["name"], size=data["size"], checksum=data["checksum"],
                checksum_algorithm=data["checksum_algorithm"], observation=ObservationInfo(**observation),
                files=data["files"], location=data["location"], path=data.get("path") or f"raw/{data['name']}",
            )
        except IngestConflict as exc:
            return conflict(str(exc))
        package = RawDataPackage.objects.select_related("observation").prefetch_related("files").get(pk=package.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(IngestedPackage(package).data, status=code)
