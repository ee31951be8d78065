"""Template tags of the operator admin."""

from django import template
from django.apps import apps
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataPackageCopy
from opsdb.registry import job_kinds

register = template.Library()


PAUSED_ROUTES_SHOWN = 20


def paused_routes() -> dict:
    """Paused routes (one query): who paused each, since when and why, linked to the route's page."""
    model = apps.get_model("transfers.DataTransferRoute")
    routes = list(
        model.objects.paused().select_related(
            "origin_site", "destination_site", "relay_site", "origin_location__site", "destination_location__site"
        ).order_by("state_since", "pk")[: PAUSED_ROUTES_SHOWN + 1]
    )
    details = [
        {"text": f"{route}: {route.get_state_display().lower()} since "
                 f"{timezone.localtime(route.state_since):%Y-%m-%d %H:%M} by {route.state_by} — {route.state_reason}"
                 if route.state_since else f"{route}: {route.get_state_display().lower()}",
         "url": reverse("admin:transfers_datatransferroute_change", args=[route.pk])}
        for route in routes[:PAUSED_ROUTES_SHOWN]
    ]
    url = reverse("admin:transfers_datatransferroute_changelist")
    count = len(routes) if len(routes) <= PAUSED_ROUTES_SHOWN else model.objects.paused().count()
    return {"label": "Paused routes (their transfers are held)", "count": count, "details": details,
            "url": f"{url}?state__in=PAUSED_AUTO,PAUSED_MANUAL"}


def custody_attention() -> list[dict]:
    """Copies whose deletion failed for good, per kind of copy, and locations whose deletion paused itself."""
    items = []
    for label in ("opsdb.RawDataPackageCopy", "transfers.DataTransferPackageCopy", "opsdb.RawDataFileCopy"):
        model = apps.get_model(label)
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        items.append({"label": f"{meta.verbose_name_plural.capitalize()} whose deletion failed",
                      "count": model.objects.filter(status=CopyStatus.DELETION_FAILED).count(),
                      "url": f"{url}?status__exact={CopyStatus.DELETION_FAILED}"})
    locations = apps.get_model("opsdb.DataLocation").objects.exclude(deletion_paused_reason="")
    url = reverse("admin:opsdb_datalocation_changelist")
    items.append({"label": "Locations where deletion paused itself", "count": locations.count(), "url": url,
                  "details": [{"text": f"{loc}: {loc.deletion_paused_reason}",
                               "url": reverse("admin:opsdb_datalocation_change", args=[loc.pk])}
                              for loc in locations.select_related("site")[:20]]})
    return items


def bad_archive_copies() -> dict:
    """Archive copies an audit found bad (MISMATCH / MISSING): out of service until repaired or re-checked."""
    statuses = (CopyStatus.MISMATCH, CopyStatus.MISSING)
    url = reverse("admin:opsdb_rawdatapackagecopy_changelist")
    return {"label": "Archive copies found bad by an audit",
            "count": RawDataPackageCopy.objects.filter(status__in=statuses).count(),
            "url": f"{url}?status__in={','.join(statuses)}"}


def corrupt_bundle_copies() -> dict:
    """Transfer package copies a worker found corrupt that no repair transfer is fetching (no good copy to
    fetch from, or the repair was cancelled), with the reason; two queries."""
    model = apps.get_model("transfers.DataTransferPackageCopy")
    repairs = apps.get_model("transfers.DataTransfer").objects.filter(
        repair_of=OuterRef("pk"), status__in=(JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED))
    stuck = model.objects.filter(status=CopyStatus.MISMATCH).exclude(Exists(repairs))
    copies = list(stuck.select_related("transfer_package", "location__site").order_by("pk")[:PAUSED_ROUTES_SHOWN + 1])
    details = [{"text": f"{copy}: found corrupt; no verified copy of it is at a location with a route to "
                        f"{copy.location.site} (send a good copy there, or rebuild the bundle)",
                "url": reverse("admin:transfers_datatransferpackagecopy_change", args=[copy.pk])}
               for copy in copies[:PAUSED_ROUTES_SHOWN]]
    url = reverse("admin:transfers_datatransferpackagecopy_changelist")
    count = len(copies) if len(copies) <= PAUSED_ROUTES_SHOWN else stuck.count()
    return {"label": "Corrupt transfer package copies with no good copy to fetch from", "count": count,
            "details": details, "url": f"{url}?status__exact={CopyStatus.MISMATCH}"}


def fixity_holds() -> dict:
    """Locations where automatic repair stopped after many failed checks, with the reason (one query)."""
    model = apps.get_model("staging.FixityHold")
    holds = list(model.objects.filter(released_at__isnull=True).select_related("location__site")
                 .order_by("created_at")[:PAUSED_ROUTES_SHOWN])
    details = [{"text": f"{hold.location}: since {timezone.localtime(hold.created_at):%Y-%m-%d %H:%M} — {hold.reason}",
                "url": reverse("admin:staging_fixityhold_change", args=[hold.pk])} for hold in holds]
    url = reverse("admin:staging_fixityhold_changelist")
    return {"label": "Locations where automatic repair is held (release after checking the storage)",
            "count": len(holds), "details": details, "url": f"{url}?released_at__isnull=True"}


@register.simple_tag
def ops_attention() -> list[dict]:
    """Paused routes, bad archive copies, held repairs and jobs waiting for an operator per kind, each
    linked to its list; then the rows of the callables ``settings.ADMIN_ATTENTION`` names (stuck work
    and leases run out, from the operations view, which reads every kind's open jobs once)."""
    items = [paused_routes(), bad_archive_copies(), corrupt_bundle_copies(), fixity_holds(), *custody_attention()]
    for handler in job_kinds:
        model = handler.model
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        filters = handler.attention_filter
        query = "&".join(f"{k}__exact={int(v) if isinstance(v, bool) else v}" for k, v in filters.items())
        items.append({"label": handler.attention_label, "count": model.objects.filter(**filters).count(),
                      "url": f"{url}?{query}"})
    for path in settings.ADMIN_ATTENTION:
        items.extend(import_string(path)())
    return items
