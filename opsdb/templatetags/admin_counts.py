"""How many rows a changelist shows, in words that say when the figure is estimated or capped."""

from django import template

register = template.Library()


@register.simple_tag
def result_count_words(cl) -> str:
    """"1,234", "about 1,000,000" (the planner's estimate) or "10,000+" (counting stopped there)."""
    paginator = getattr(cl, "paginator", None)
    if getattr(paginator, "estimated", False):
        return f"about {cl.result_count:,}"
    if getattr(paginator, "capped", False):
        return f"{paginator.cap:,}+"
    return f"{cl.result_count:,}"
