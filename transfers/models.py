"""How data moves between sites: routes, transfer packages (bundles), transfers and their logs."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from opsdb.choices import ChecksumAlgorithm, JobKind, JobStatus, LocationType, TransferMethod
from opsdb.leases import LeasedJob, open_job_indexes, partial_data_index
from opsdb.models import REASON_MAX_LENGTH, DataLocation, PhysicalCopy, RawDataPackage, Site
from transfers.choices import PAUSED_STATES, RouteState, RouteType
from transfers.routing import validate_route


class DataTransferRouteQuerySet(models.QuerySet):
    def active(self):
        return self.filter(active=True)

    def site_level(self):
        return self.filter(route_type__in=(RouteType.DIRECT, RouteType.RELAY))

    def custom(self):
        return self.filter(route_type=RouteType.CUSTOM)

    def paused(self):
        return self.filter(state__in=PAUSED_STATES)


# Written only by the route-health services (transfers/health.py), never by a save of the route's settings.
HEALTH_FIELDS = ("state", "state_reason", "state_since", "state_by", "consecutive_failures", "cooldown_until",
                 "probe_transfer")
AUTOMATIC = "ops-db (automatic)"


class DataTransferRoute(FSMModelMixin, models.Model):
    """How data flows from one site to another; edited by operators at runtime.

    Its ``state`` says whether its transfers may be claimed: ACTIVE, PAUSED_AUTO (it paused itself
    after repeated retryable failures; a probe transfer brings it back) or PAUSED_MANUAL (an
    operator paused it, with a reason). A paused route's transfers are held, never cancelled.
    """

    origin_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="routes_out")
    destination_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="routes_in")
    route_type = models.CharField(max_length=10, choices=RouteType.choices, default=RouteType.DIRECT)
    method = models.CharField(max_length=10, choices=TransferMethod.choices)
    relay_site = models.ForeignKey(
        Site, null=True, blank=True, on_delete=models.PROTECT, related_name="routes_relayed",
        help_text="RELAY routes only: data lands at this site's buffer and is forwarded from there.",
    )
    origin_location = models.ForeignKey(
        DataLocation, null=True, blank=True, on_delete=models.PROTECT, related_name="custom_routes_out",
        help_text="CUSTOM routes only: data at this location takes this route.",
    )
    destination_location = models.ForeignKey(
        DataLocation, null=True, blank=True, on_delete=models.PROTECT, related_name="custom_routes_in",
        help_text="CUSTOM routes only: deliver straight into this location.",
    )
    active = models.BooleanField(default=True, help_text="Inactive routes create no new transfers.")
    max_concurrent = models.PositiveIntegerField(
        default=4, validators=[MinValueValidator(1, "At least 1; to stop a route, pause it (with a reason).")],
        help_text="Transfers on this route active at once (at least 1; pause the route to stop it).",
    )
    bundle_target_size = models.BigIntegerField(
        null=True, blank=True, help_text="Bytes per transfer package; empty = the global default."
    )
    bundle_max_wait = models.DurationField(
        null=True, blank=True, help_text="Seal a bundle when its oldest member waited this long; empty = default."
    )
    allow_relay_fallback = models.BooleanField(
        "relay fallback allowed", default=True,
        help_text="DIRECT routes: while this route is paused, new bundles may take a healthy RELAY route "
        "between the same sites. Untick to keep them on this route (held until it resumes).",
    )
    state = FSMField(default=RouteState.ACTIVE, choices=RouteState.choices, protected=True, db_index=True)
    state_reason = models.CharField("reason", max_length=REASON_MAX_LENGTH, blank=True, default="")
    state_since = models.DateTimeField("state since", null=True, blank=True)
    state_by = models.CharField("state set by", max_length=200, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Retryable transfer failures since the last success."
    )
    cooldown_until = models.DateTimeField(
        null=True, blank=True, help_text="Paused automatically: no probe transfer before this time."
    )
    probe_transfer = models.ForeignKey(
        "DataTransfer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Paused automatically: the transfer released to test the route.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["consecutive_failures", "cooldown_until", "probe_transfer"])
    objects = DataTransferRouteQuerySet.as_manager()

    class Meta:
        ordering = ["origin_site__name", "destination_site__name", "route_type"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(origin_site=models.F("destination_site")),
                name="route_origin_differs_from_destination",
                violation_error_message="A route cannot end at the site where it starts.",
            ),
            models.CheckConstraint(
                condition=Q(route_type=RouteType.RELAY, relay_site__isnull=False)
                | (~Q(route_type=RouteType.RELAY) & Q(relay_site__isnull=True)),
                name="route_relay_site_iff_relay",
                violation_error_message="A relay route needs a relay site, and only relay routes have one.",
            ),
            models.CheckConstraint(
                condition=Q(relay_site__isnull=True)
                | (~Q(relay_site=models.F("origin_site")) & ~Q(relay_site=models.F("destination_site"))),
                name="route_relay_differs_from_ends",
                violation_error_message="The relay site must differ from the origin and the destination.",
            ),
            models.CheckConstraint(
                condition=Q(route_type=RouteType.CUSTOM, origin_location__isnull=False,
                            destination_location__isnull=False)
                | (~Q(route_type=RouteType.CUSTOM) & Q(origin_location__isnull=True,
                                                       destination_location__isnull=True)),
                name="route_locations_iff_custom",
                violation_error_message="A custom route needs both locations, and only custom routes have them.",
            ),
            models.CheckConstraint(condition=Q(route_type__in=RouteType.values), name="route_type_valid"),
            models.CheckConstraint(condition=Q(method__in=TransferMethod.values), name="route_method_valid"),
            models.CheckConstraint(
                condition=Q(max_concurrent__gte=1), name="route_max_concurrent_positive",
                violation_error_message="At least 1 transfer at a time; to stop a route, pause it (with a reason).",
            ),
            models.CheckConstraint(condition=Q(state__in=RouteState.values), name="route_state_valid"),
            models.CheckConstraint(
                condition=Q(bundle_target_size__isnull=True) | Q(bundle_target_size__gt=0),
                name="route_bundle_target_positive",
                violation_error_message="The bundle target size must be positive.",
            ),
            # A pair of sites has at most one DIRECT and one RELAY route. With both, the DIRECT route
            # carries the data and the RELAY route is its fallback while it is paused.
            models.UniqueConstraint(
                fields=["origin_site", "destination_site", "route_type"],
                condition=Q(route_type__in=(RouteType.DIRECT, RouteType.RELAY)),
                name="route_one_site_level_route_per_pair_and_type",
                violation_error_message="There is already a route of this type between these sites (a pair of "
                "sites has at most one direct and one relay route).",
            ),
            models.UniqueConstraint(
                fields=["origin_location", "destination_location"],
                condition=Q(route_type=RouteType.CUSTOM),
                name="route_one_custom_route_per_location_pair",
                violation_error_message="There is already a custom route between these locations.",
            ),
        ]

    def __str__(self) -> str:
        if self.route_type == RouteType.CUSTOM:
            path = f"{self.origin_location} → {self.destination_location}"
        elif self.route_type == RouteType.RELAY:
            path = f"{self.origin_site} → {self.relay_site} → {self.destination_site}"
        else:
            path = f"{self.origin_site} → {self.destination_site}"
        return f"{path} ({self.get_route_type_display().lower()}, {self.method})"

    def save(self, *args, **kwargs):
        """Saving the route's settings never overwrites its health, which services update by name."""
        if not self._state.adding and kwargs.get("update_fields") is None and self.pk is not None:
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in HEALTH_FIELDS
            ]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Refuse the routes DESIGN.md calls invalid, with a message per field."""
        super().clean()
        validate_route(self)

    def clean_fields(self, exclude=None):
        # Model validation re-assigns every field; the protected state only changes by transition.
        super().clean_fields(exclude={*(exclude or ()), "state"})

    @property
    def is_paused(self) -> bool:
        return self.state in PAUSED_STATES

    def _enter(self, *, reason: str, by_name: str, now: datetime) -> None:
        self.state_reason = reason[:REASON_MAX_LENGTH]
        self.state_by = by_name[:200]
        self.state_since = now
        self.probe_transfer = None

    @fsm_log_by
    @fsm_log_description
    @transition(field=state, source=RouteState.ACTIVE, target=RouteState.PAUSED_AUTO)
    def pause_auto(self, *, reason: str, now: datetime, by=None, description=None):
        """ACTIVE → PAUSED_AUTO: repeated retryable failures; its transfers are held until a probe succeeds."""
        self._enter(reason=reason, by_name=AUTOMATIC, now=now)
        self.cooldown_until = now + timedelta(seconds=settings.ROUTE_COOLDOWN_SECONDS)

    @fsm_log_by
    @fsm_log_description
    @transition(field=state, source=RouteState.PAUSED_AUTO, target=RouteState.PAUSED_AUTO)
    def probe_failed(self, *, now: datetime, by=None, description=None):
        """PAUSED_AUTO → PAUSED_AUTO: the probe transfer failed; the cool-down starts again."""
        self.probe_transfer = None
        self.cooldown_until = now + timedelta(seconds=settings.ROUTE_COOLDOWN_SECONDS)

    @fsm_log_by
    @fsm_log_description
    @transition(field=state, source=[RouteState.ACTIVE, RouteState.PAUSED_AUTO], target=RouteState.PAUSED_MANUAL)
    def pause(self, *, reason: str, by_name: str, now: datetime, by=None, description=None):
        """ACTIVE/PAUSED_AUTO → PAUSED_MANUAL: an operator stops the route; its transfers are held."""
        self._enter(reason=reason, by_name=by_name, now=now)
        self.cooldown_until = None

    @fsm_log_by
    @fsm_log_description
    @transition(field=state, source=list(PAUSED_STATES), target=RouteState.ACTIVE)
    def resume(self, *, reason: str, by_name: str, now: datetime, by=None, description=None):
        """PAUSED_AUTO/PAUSED_MANUAL → ACTIVE: a probe succeeded, or an operator resumed the route."""
        self._enter(reason=reason, by_name=by_name, now=now)
        self.cooldown_until = None
        self.consecutive_failures = 0


class RouteAttempt(models.Model):
    """The outcome of one transfer attempt on a route that says something about the link.

    Successes and retryable failures only: a non-retryable failure (checksum, permission, missing
    source) or a lost lease says nothing about the network. Read for the success rate over the
    last minutes; the scheduler deletes rows older than that window.
    """

    route = models.ForeignKey(DataTransferRoute, on_delete=models.CASCADE, related_name="attempts")
    succeeded = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["route", "created_at"], name="routeattempt_route_time")]

    def __str__(self) -> str:
        return f"{'success' if self.succeeded else 'failure'} on route #{self.route_id} at {self.created_at}"


class DataTransferPackage(LeasedJob):
    """A bundle of raw data packages built into one archive at a site's buffer (job kind ``package``)."""

    KIND = JobKind.PACKAGE
    DONE = JobStatus.COMPLETED

    name = models.CharField(max_length=255, unique=True)
    origin_location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="built_packages")
    raw_packages = models.ManyToManyField(
        RawDataPackage, through="DataTransferPackageMember", related_name="transfer_packages"
    )
    payload_size = models.BigIntegerField(default=0, help_text="Sum of the members' sizes (bytes).")
    target_size = models.BigIntegerField(null=True, blank=True, help_text="The target it was packed for.")
    size = models.BigIntegerField(null=True, blank=True, help_text="Archive size reported by the builder.")
    checksum = models.CharField(max_length=128, blank=True)
    checksum_algorithm = models.CharField(
        max_length=10, choices=ChecksumAlgorithm.choices, default=ChecksumAlgorithm.SHA256
    )
    archive_path = models.CharField(max_length=1024, help_text="Relative to the origin location's base path.")

    class Meta:
        ordering = ["-created_at"]
        # API lists filtered by status, newest id first
        indexes = [models.Index(fields=["status", "id"], name="dtp_status_id"), partial_data_index("dtp"),
                   *open_job_indexes("dtp", "origin_location")]
        constraints = [
            models.CheckConstraint(
                condition=Q(size__isnull=True) | Q(size__gte=0), name="dtp_size_not_negative",
                violation_error_message="Size cannot be negative.",
            ),
            models.CheckConstraint(condition=Q(payload_size__gte=0), name="dtp_payload_size_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.origin_location_id and self.origin_location.location_type != LocationType.BUFFER:
            raise ValidationError({"origin_location": "Transfer packages are built at a buffer location."})


class DataTransferPackageMember(models.Model):
    """A raw data package inside a transfer package; a raw package is bundled once."""

    transfer_package = models.ForeignKey(DataTransferPackage, on_delete=models.CASCADE, related_name="members")
    raw_package = models.OneToOneField(RawDataPackage, on_delete=models.PROTECT, related_name="bundle_membership")

    class Meta:
        ordering = ["transfer_package_id", "raw_package_id"]

    def __str__(self) -> str:
        return f"{self.raw_package} in {self.transfer_package}"


class DataTransferPackageCopy(PhysicalCopy):
    """A transfer package's archive present at a location (where it was built, or where it landed)."""

    transfer_package = models.ForeignKey(DataTransferPackage, on_delete=models.CASCADE, related_name="copies")

    class Meta:
        verbose_name_plural = "transfer package copies"
        constraints = [
            models.UniqueConstraint(fields=["transfer_package", "location"], name="dtpcopy_one_per_location"),
        ]

    def __str__(self) -> str:
        return f"{self.transfer_package} @ {self.location}"


class DataTransfer(LeasedJob):
    """One transfer of one transfer package's archive from one location to another (job kind ``transfer``).

    It keeps the method and locations it was created with: editing the route later changes nothing here.
    """

    KIND = JobKind.TRANSFER
    DONE = JobStatus.TRANSFERRED

    transfer_package = models.ForeignKey(DataTransferPackage, on_delete=models.PROTECT, related_name="transfers")
    route = models.ForeignKey(
        DataTransferRoute, null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    origin_location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="transfers_out")
    destination_location = models.ForeignKey(DataLocation, on_delete=models.PROTECT, related_name="transfers_in")
    method = models.CharField(max_length=10, choices=TransferMethod.choices)
    hop = models.PositiveSmallIntegerField(default=1, help_text="1 for the first hop; 2 after a relay.")
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="next_hops",
        help_text="The hop that brought the package to this transfer's origin (relays).",
    )
    destination_path = models.CharField(max_length=1024, blank=True, help_text="Where it landed (relative).")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(origin_location=models.F("destination_location")),
                name="transfer_origin_differs_from_destination",
                violation_error_message="A transfer cannot go from a location to itself.",
            ),
            models.UniqueConstraint(
                fields=["transfer_package", "destination_location"],
                condition=~Q(status=JobStatus.CANCELLED),
                name="transfer_once_per_package_and_destination",
                violation_error_message="This package already has a transfer to that location.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="transfer_status_due"),
            models.Index(fields=["status", "id"], name="transfer_status_id"),  # API lists by status, newest first
            partial_data_index("transfer"),
            *open_job_indexes("transfer", "origin_location"),
        ]

    def __str__(self) -> str:
        return f"{self.transfer_package} {self.origin_location} → {self.destination_location}"


class DataTransferUnpack(LeasedJob):
    """Unpacking a transfer's archive at its destination (job kind ``unpack``): the transfer's unpack state.

    Kept apart from the transfer so an unpack failure never resets the transfer and unpacking is
    retried without transferring again. Its primary key is the transfer's.
    """

    KIND = JobKind.UNPACK
    DONE = JobStatus.UNPACKED

    transfer = models.OneToOneField(DataTransfer, primary_key=True, on_delete=models.CASCADE, related_name="unpack")

    class Meta:
        ordering = ["-created_at"]
        # API lists filtered by status, newest id first
        indexes = [models.Index(fields=["status", "transfer"], name="unpack_status_id"), partial_data_index("unpack"),
                   *open_job_indexes("unpack", None, pk="transfer")]

    def __str__(self) -> str:
        return f"unpack of {self.transfer}"
