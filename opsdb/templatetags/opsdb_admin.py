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


@register.simple_tag
def ops_attention() -> list[dict]:
    """Failed jobs per kind and leases run out, each with a link to the filtered list."""
    items = []
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
