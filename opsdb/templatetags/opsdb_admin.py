"""Template tags of the operator admin."""

from django import template
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from opsdb.choices import CopyStatus, JobStatus
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


@register.simple_tag
def ops_attention() -> list[dict]:
    """Paused routes, jobs waiting for an operator per kind and leases run out, each linked to its list."""
    items = [paused_routes(), *custody_attention()]
    now = timezone.now()
    for handler in job_kinds:
        model = handler.model
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        filters = handler.attention_filter
        query = "&".join(f"{k}__exact={int(v) if isinstance(v, bool) else v}" for k, v in filters.items())
        items.append({"label": handler.attention_label, "count": model.objects.filter(**filters).count(),
                      "url": f"{url}?{query}"})
        expired = model.objects.lease_expired(now).count()
        if expired:
            items.append({"label": f"{meta.verbose_name_plural.capitalize()} with an expired lease",
                          "count": expired, "url": f"{url}?status__exact={JobStatus.ACTIVE}"})
    return items
