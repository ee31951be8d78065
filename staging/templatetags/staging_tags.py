from django import template
from django.utils import timezone
from django.utils.html import format_html

from opsdb.explanation import ExplanationCode, age, clock
from opsdb.log_links import log_url
from staging.explain import job_status_words, status_words

register = template.Library()

UNITS = ["bytes", "kB", "MB", "GB", "TB", "PB"]


@register.filter
def human_bytes(value) -> str:
    """Decimal units, as storage is sold and as the instruments report: 5000000000 → '5.0 GB'."""
    if value is None:
        return "—"
    size = float(value)
    for unit in UNITS:
        if abs(size) < 1000 or unit == UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} {UNITS[-1]}"


@register.filter
def percent(done, total) -> int:
    if not total:
        return 0
    return max(0, min(100, round(100 * (done or 0) / total)))


@register.filter
def status_text(status: str) -> str:
    return status_words(status)


@register.filter
def job_status(job) -> str:
    return job_status_words(job)


# How the time of an explanation is introduced ("Waiting since 17:15 (3 min): …"), by its code;
# finished requests show none (their state says it all).
SINCE_WORDS = {
    ExplanationCode.RUNNING: "Running since", ExplanationCode.RESUMED: "Running since",
    ExplanationCode.LEASE_EXPIRED: "Stalled since", ExplanationCode.NEEDS_OPERATOR: "Stopped since",
    ExplanationCode.DONE: None, ExplanationCode.CANCELLED: None,
}


@register.filter
def why(job) -> str:
    """Why the request is where it is, with since when: "Waiting since 17:15 (3 min): …" (open requests only)."""
    explanation = getattr(job, "explanation", None)
    words = SINCE_WORDS.get(explanation.code, "Waiting since") if explanation is not None else None
    if words is None:
        return ""
    now = timezone.now()
    if explanation.since is None:
        return format_html('<span class="why" data-code="{}">{}</span>', explanation.code, explanation.message)
    return format_html(
        '<span class="why" data-code="{}"><span class="why-since" title="{} UTC">{} {} ({})</span>: {}</span>',
        explanation.code, f"{timezone.localtime(explanation.since):%Y-%m-%d %H:%M:%S}", words,
        clock(explanation.since, now), age(explanation.since, now), explanation.message,
    )


@register.filter
def log_link(job) -> str:
    """The job's log file: a link (LOG_URL_TEMPLATE set), else the path with a button that copies it."""
    if not job.log_path:
        return ""
    url = log_url(job.log_path, kind=job.KIND, id=job.pk, worker=job.lease_holder)
    if url:
        return format_html('<a class="log-link" href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url,
                           job.log_path)
    return format_html('<code class="log-path">{}</code> <button type="button" class="small link" '
                       'data-copy-text="{}">Copy</button>', job.log_path, job.log_path)
