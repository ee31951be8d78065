from django import template

from operations.stuck import stalled_text as _stalled_text

register = template.Library()


@register.simple_tag
def stalled_text(site) -> str:
    return _stalled_text(site)
