"""Template tags of the operator admin."""

from django import template
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from opsdb.choices import JobStatus

register = template.Library()

# (app_label.Model, label, extra filter for the failed ones)
JOB_MODELS = (
    ("staging.LongTermArchiveTransfer", "Archive transfers waiting for an operator", {"requires_intervention": True}),
    ("transfers.DataTransferPackage", "Failed transfer package builds", {}),
    ("transfers.DataTransfer", "Failed transfers", {}),
    ("transfers.DataTransferUnpack", "Failed unpacks", {}),
    ("staging.StagingJob", "Failed staging jobs", {}),
)


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


@register.simple_tag
def ops_attention() -> list[dict]:
    """Paused routes, failed jobs per kind and leases run out, each with a link to the filtered list."""
    items = [paused_routes()]
    now = timezone.now()
    for label_path, label, extra in JOB_MODELS:
        model = apps.get_model(label_path)
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        filters = {"status": JobStatus.FAILED, **extra}
        query = "&".join(f"{k}__exact={int(v) if isinstance(v, bool) else v}" for k, v in filters.items())
        items.append({"label": label, "count": model.objects.filter(**filters).count(), "url": f"{url}?{query}"})
        expired = model.objects.lease_expired(now).count()
        if expired:
            items.append({"label": f"{meta.verbose_name_plural.capitalize()} with an expired lease",
                          "count": expired, "url": f"{url}?status__exact={JobStatus.ACTIVE}"})
    return items
