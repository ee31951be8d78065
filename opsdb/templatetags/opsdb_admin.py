"""Template tags of the operator admin."""

from django import template
from django.urls import reverse
from django.utils import timezone

from opsdb.choices import JobStatus
from opsdb.registry import job_kinds

register = template.Library()


@register.simple_tag
def ops_attention() -> list[dict]:
    """Jobs waiting for an operator per kind and leases run out, each with a link to the filtered list."""
    items = []
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
