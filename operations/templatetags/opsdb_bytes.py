"""Filters of the operations dashboard: sizes, rates and fractions as operators read them."""

from django import template

from opsdb.planning import human_bytes as _human_bytes

register = template.Library()


@register.filter
def human_bytes(value) -> str:
    return _human_bytes(int(value or 0))


@register.filter
def human_rate(value) -> str:
    return f"{_human_bytes(int(value or 0))}/s"


@register.filter
def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


@register.filter
def bar_width(value) -> str:
    """A fill fraction as a CSS width in percent, kept within 0–100."""
    return f"{min(max(float(value or 0), 0.0), 1.0) * 100:.0f}"
