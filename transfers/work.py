"""Handlers of the job kinds ``package``, ``transfer`` and ``unpack`` (docs/worker-protocol.md).

Completing a job records facts only (sizes, checksums, physical copies); the follow-up work
(transfers of a built package, unpacking, next relay hops) is created by the scheduler.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Now
from rest_framework import serializers

from opsdb.api.fields import ChecksumField, IntegerField, RelativePathField
from opsdb.choices import ChecksumAlgorithm, CopyStatus, JobKind, JobStatus
from opsdb.explanation import Explanation
from opsdb.models import RawDataPackageCopy
from opsdb.work import JobKindHandler, location_payload, raw_package_path, record_copies, record_copy
from transfers.choices import RouteState
from transfers.explain import explain_corrupt_sources, explain_transfers
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferPackageMember,
    DataTransferRoute,
    DataTransferUnpack,
)
from transfers.services import (
    probe_open_filter,
    route_admits,
    route_transfer_failed,
    route_transfer_succeeded,
    transfer_package_split,
)

MEMBERS = Prefetch(
    "members", queryset=DataTransferPackageMember.objects.select_related("raw_package").order_by("raw_package__name")
)


def member_payload(member: DataTransferPackageMember) -> dict[str, Any]:
    raw = member.raw_package
    return {"raw_package_id": raw.pk, "name": raw.name, "path": raw_package_path(raw), "size": raw.size,
            "checksum": raw.checksum, "checksum_algorithm": raw.checksum_algorithm}


class PackageResult(serializers.Serializer):
    size = IntegerField(min_value=0, max_value=2**63 - 1)
    checksum = ChecksumField()
    checksum_algorithm = serializers.ChoiceField(choices=ChecksumAlgorithm.choices, required=False)


class PackageHandler(JobKindHandler):
    """Build a transfer package's archive at its origin buffer."""

    kind = JobKind.PACKAGE
    model = DataTransferPackage
    result_serializer = PackageResult
    attention_label = "Failed transfer package builds"
    site_field = "origin_location__site"
    size_field = "payload_size"
    result_related = ("origin_location",)

    def queryset(self) -> QuerySet:
        return DataTransferPackage.objects.select_related("origin_location__site").prefetch_related(MEMBERS)

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(origin_location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(members__raw_package_id__in=package_ids).select_related("origin_location__site")

    def site_of(self, job: DataTransferPackage):
        return job.origin_location.site

    def size_of(self, job: DataTransferPackage) -> int | None:
        return job.payload_size

    def payload(self, job: DataTransferPackage) -> dict[str, Any]:
        return {
            "transfer_package": {"id": job.pk, "name": job.name, "archive_path": job.archive_path,
                                 "payload_size": job.payload_size, "checksum_algorithm": job.checksum_algorithm},
            "location": location_payload(job.origin_location),
            "members": [member_payload(m) for m in job.members.all()],
        }

    def apply_result(self, job: DataTransferPackage, data: dict[str, Any]) -> None:
        job.size = data["size"]
        job.checksum = data["checksum"]
        job.checksum_algorithm = data.get("checksum_algorithm") or job.checksum_algorithm
        record_copy(DataTransferPackageCopy, transfer_package=job, location=job.origin_location,
                    path=job.archive_path, checksum=job.checksum)

    def on_failed(self, job: DataTransferPackage, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """A bundle whose build cannot succeed (a bad member, said the worker) is split so the rest go on."""
        if not retryable and job.status == JobStatus.FAILED:
            transfer_package_split(transfer_package=job, reason=job.last_error)


class TransferResult(serializers.Serializer):
    checksum = ChecksumField()
    size = IntegerField(min_value=0, max_value=2**63 - 1, required=False)
    path = RelativePathField(required=False)


class TransferHandler(JobKindHandler):
    """Move a transfer package's archive from one location to another (claimed at the origin: push)."""

    kind = JobKind.TRANSFER
    model = DataTransfer
    result_serializer = TransferResult
    attention_label = "Failed transfers"
    site_field = "origin_location__site"
    size_field = "transfer_package__size"
    result_related = ("transfer_package", "destination_location")

    def queryset(self) -> QuerySet:
        return DataTransfer.objects.select_related(
            "transfer_package", "origin_location__site", "destination_location__site"
        )

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(origin_location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(transfer_package__members__raw_package_id__in=package_ids).select_related(
            "origin_location__site")

    def for_methods(self, queryset: QuerySet, methods: Sequence[str]) -> QuerySet:
        return queryset.filter(method__in=methods)

    reads_source_copy = True

    def source_copy(self, job: DataTransfer) -> DataTransferPackageCopy | None:
        """The bundle's copy at the transfer's origin."""
        return DataTransferPackageCopy.objects.filter(
            transfer_package_id=job.transfer_package_id, location_id=job.origin_location_id).first()

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Not held by a paused route (bar its probe), nor on a route already at ``max_concurrent``, nor
        reading a copy found corrupt (it waits until the copy is fetched again).

        One join and subqueries, not a query per row.
        """
        active = Count("transfers", filter=Q(transfers__status=JobStatus.ACTIVE))
        full_routes = (
            DataTransferRoute.objects.annotate(n_active=active)
            .filter(n_active__gte=F("max_concurrent"))
            .values("pk")
        )
        # The database's clock, not a value read now: the claim's SQL is made once (opsdb.prepared).
        open_route = Q(route__isnull=True) | Q(route__state=RouteState.ACTIVE) | probe_open_filter(
            Now(), "route__"
        )
        return queryset.filter(open_route).exclude(route__in=full_routes).exclude(
            Exists(bad_copies("transfer_package_id", "origin_location_id")))

    def claim_guard(self, job: DataTransfer) -> bool:
        """Hold the route's row lock while counting its active transfers.

        ``claimable`` reads a snapshot: two claimers could each see 3 of 4 slots taken and both
        claim (SKIP LOCKED lets them lock different transfers). Locking the route row makes the
        claimers of one route take turns for the count-and-claim; the lock is held until the
        claim commits, and the next claimer's count (a fresh statement under READ COMMITTED)
        sees it. Transfers of different routes never wait on each other. On SQLite the IMMEDIATE
        claim transaction already serialises every claimer.
        The same lock makes a paused route release one probe at a time (``route_admits``).
        """
        if job.route_id is None:
            return True
        route = DataTransferRoute.objects.select_for_update().get(pk=job.route_id)
        active = DataTransfer.objects.filter(route_id=route.pk, status=JobStatus.ACTIVE).count()
        return active < route.max_concurrent and route_admits(route=route, transfer=job)

    def on_failed(self, job: DataTransfer, *, retryable: bool = True, lease_expired: bool = False) -> None:
        """A retryable failure the worker reported counts against the route's health (see transfers/services.py)."""
        if retryable and not lease_expired:
            route_transfer_failed(transfer=job, error=job.last_error)

    def site_of(self, job: DataTransfer):
        return job.origin_location.site

    def explain(self, jobs: Sequence[DataTransfer], now: datetime) -> dict[int, Explanation]:
        """A paused route or one at its limit holds pending transfers; a relay waits for the next hop."""
        return explain_transfers(jobs, now)

    def size_of(self, job: DataTransfer) -> int | None:
        return job.transfer_package.size

    def payload(self, job: DataTransfer) -> dict[str, Any]:
        dtp = job.transfer_package
        return {
            "transfer_package": {"id": dtp.pk, "name": dtp.name, "size": dtp.size, "checksum": dtp.checksum,
                                 "checksum_algorithm": dtp.checksum_algorithm},
            "method": job.method, "hop": job.hop,
            "source": {"location": location_payload(job.origin_location), "path": dtp.archive_path},
            "destination": {"location": location_payload(job.destination_location),
                            "path": job.destination_path or dtp.archive_path},
        }

    def apply_result(self, job: DataTransfer, data: dict[str, Any]) -> None:
        dtp = job.transfer_package
        if not dtp.checksum:
            raise ValidationError({"checksum": f"{dtp} has no recorded checksum to verify against."})
        if data["checksum"] != dtp.checksum.lower():
            raise ValidationError({"checksum": f"Does not match the checksum of {dtp} ({dtp.checksum})."})
        if data.get("size") is not None and dtp.size is not None and data["size"] != dtp.size:
            raise ValidationError({"size": f"Does not match the size of {dtp} ({dtp.size} bytes)."})
        job.destination_path = data.get("path") or job.destination_path or dtp.archive_path
        record_copy(DataTransferPackageCopy, transfer_package=dtp, location=job.destination_location,
                    path=job.destination_path, checksum=data["checksum"])
        route_transfer_succeeded(transfer=job)
        if job.repair_of_id:
            retry_readers(transfer_package_id=dtp.pk, location_id=job.destination_location_id,
                          reason=f"copy at {job.destination_location} fetched again by transfer #{job.pk}")


class UnpackedMember(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    path = RelativePathField()
    checksum = ChecksumField()


class UnpackResult(serializers.Serializer):
    members = UnpackedMember(many=True, allow_empty=False)


class UnpackHandler(JobKindHandler):
    """Unpack a transferred archive at its destination into raw package copies."""

    kind = JobKind.UNPACK
    model = DataTransferUnpack
    result_serializer = UnpackResult
    attention_label = "Failed unpacks"
    site_field = "transfer__destination_location__site"
    size_field = "transfer__transfer_package__size"
    result_related = ("transfer__transfer_package", "transfer__destination_location")

    def queryset(self) -> QuerySet:
        return DataTransferUnpack.objects.select_related(
            "transfer__transfer_package", "transfer__destination_location__site"
        ).prefetch_related(Prefetch("transfer__transfer_package__members", queryset=MEMBERS.queryset))

    def at_sites(self, queryset: QuerySet, site_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(transfer__destination_location__site_id__in=site_ids)

    def touching_raw_packages(self, queryset: QuerySet, package_ids: Sequence[int]) -> QuerySet:
        return queryset.filter(transfer__transfer_package__members__raw_package_id__in=package_ids).select_related(
            "transfer__destination_location__site")

    reads_source_copy = True

    def source_copy(self, job: DataTransferUnpack) -> DataTransferPackageCopy | None:
        """The bundle's copy where its transfer landed."""
        return DataTransferPackageCopy.objects.filter(
            transfer_package_id=job.transfer.transfer_package_id,
            location_id=job.transfer.destination_location_id).first()

    def claimable(self, queryset: QuerySet) -> QuerySet:
        """Only once the archive has arrived (the scheduler creates unpacks then; this guards the rule), and
        not while the archive there is known corrupt (it waits until it is fetched again)."""
        return queryset.filter(transfer__status=JobStatus.TRANSFERRED).exclude(
            Exists(bad_copies("transfer__transfer_package_id", "transfer__destination_location_id")))

    def site_of(self, job: DataTransferUnpack):
        return job.transfer.destination_location.site

    def size_of(self, job: DataTransferUnpack) -> int | None:
        return job.transfer.transfer_package.size

    def explain(self, jobs: Sequence[DataTransferUnpack], now: datetime) -> dict[int, Explanation]:
        """An unpack held because the archive where it landed was found corrupt (one query more, only when
        a listed unpack is pending after a failed attempt)."""
        held = [u.pk for u in jobs if u.status == JobStatus.PENDING and u.attempts]
        if not held:
            return {}
        readers = {pk: (bundle, location) for pk, bundle, location in DataTransfer.objects.filter(pk__in=held)
                   .values_list("pk", "transfer_package_id", "destination_location_id")}
        return explain_corrupt_sources(readers, now)

    def payload(self, job: DataTransferUnpack) -> dict[str, Any]:
        transfer = job.transfer
        dtp = transfer.transfer_package
        return {
            "transfer": {"id": transfer.pk},
            "transfer_package": {"id": dtp.pk, "name": dtp.name, "checksum": dtp.checksum,
                                 "checksum_algorithm": dtp.checksum_algorithm},
            "location": location_payload(transfer.destination_location),
            "archive_path": transfer.destination_path or dtp.archive_path,
            "members": [member_payload(m) for m in dtp.members.all()],
        }

    def apply_result(self, job: DataTransferUnpack, data: dict[str, Any]) -> None:
        transfer = job.transfer
        expected = {m.raw_package.name: m.raw_package for m in transfer.transfer_package.members.all()}
        reported = {m["name"]: m for m in data["members"]}
        errors = _member_errors(expected, reported)
        if len(reported) != len(data["members"]):
            errors.append("A member is reported more than once.")
        if errors:
            raise ValidationError({"members": errors})
        record_copies(RawDataPackageCopy, of="raw_package", location=transfer.destination_location,
                      entries=[(raw, reported[name]["path"], reported[name]["checksum"])
                               for name, raw in expected.items()])


def bad_copies(package_field: str, location_field: str) -> QuerySet:
    """The bundle copies found corrupt or missing at the outer job's ``location_field``, for ``Exists``."""
    return DataTransferPackageCopy.objects.filter(
        transfer_package_id=OuterRef(package_field), location_id=OuterRef(location_field),
        status__in=(CopyStatus.MISMATCH, CopyStatus.MISSING))


def retry_readers(*, transfer_package_id: int, location_id: int, reason: str) -> int:
    """Transfers from, and unpacks at, a bundle copy that is good again, go on at once.

    A job that failed for good while its source copy was corrupt gets a fresh set of attempts
    (FAILED → PENDING, logged); one waiting out its backoff is due now. A handful of jobs at most
    (one per route leaving the location).
    """
    from opsdb.services import write_job_log

    DataTransfer.objects.filter(transfer_package_id=transfer_package_id, origin_location_id=location_id,
                                status=JobStatus.PENDING).update(next_attempt_at=None)
    DataTransferUnpack.objects.filter(transfer__transfer_package_id=transfer_package_id,
                                      transfer__destination_location_id=location_id,
                                      status=JobStatus.PENDING).update(next_attempt_at=None)
    jobs = [
        *DataTransfer.objects.select_for_update().filter(
            transfer_package_id=transfer_package_id, origin_location_id=location_id, status=JobStatus.FAILED),
        *DataTransferUnpack.objects.select_for_update().filter(
            transfer__transfer_package_id=transfer_package_id, transfer__destination_location_id=location_id,
            status=JobStatus.FAILED),
    ]
    for job in jobs:
        job.retry(description=reason)
        job.save()
        write_job_log(job=job, message=f"retried: {reason}")
    return len(jobs)


def _member_errors(expected: dict, reported: dict) -> list[str]:
    errors = [f"{name}: missing from the report." for name in sorted(expected.keys() - reported.keys())]
    errors += [f"{name}: not a member of this package." for name in sorted(reported.keys() - expected.keys())]
    errors += [
        f"{name}: checksum {reported[name]['checksum']} does not match {raw.checksum}."
        for name, raw in sorted(expected.items())
        if name in reported and reported[name]["checksum"] != raw.checksum.lower()
    ]
    return errors
