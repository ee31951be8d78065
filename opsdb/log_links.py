"""Links to the detailed log files that workers write: ``LOG_URL_TEMPLATE`` turns a log path into a URL.

ops-db never opens a log file: it only shows where the file is. With ``LOG_URL_TEMPLATE`` set (e.g.
``https://logs.example.org/files{path}`` for a file server, or a Grafana/Loki explore URL with
``{path}`` in its query) each log path becomes a link; without it the path is shown as text to
copy. Placeholders: ``{path}`` (required; percent-encoded, ``/`` kept), ``{kind}``, ``{id}`` and
``{worker}`` (the worker that wrote it, percent-encoded). The template is checked at start-up
(system check ``opsdb.E020``): only these placeholders, no format specs, an http(s) URL with a host.
A path with ``.``/``..`` segments, or with control characters, is shown as text, never linked.
"""

import string
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

FIELDS = ("path", "kind", "id", "worker")
SAMPLE = {"path": "/var/log/opsdb/transfer-12.log", "kind": "transfer", "id": "12", "worker": "cologne-dtn-1"}


def template_problems(template: str) -> list[str]:
    """What is wrong with a LOG_URL_TEMPLATE (empty: nothing; an empty template is allowed: no links)."""
    if not template:
        return []
    if any(ch.isspace() or ord(ch) < 32 for ch in template):
        return ["it contains spaces or control characters"]
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"it cannot be read as a template ({exc}); write a literal brace as {{{{ or }}}}"]
    problems = []
    names = [name for _, name, _, _ in parts if name is not None]
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            problems.append(f"{{{name}}} is not a placeholder (use {', '.join('{' + f + '}' for f in FIELDS)})")
        elif spec or conversion:
            problems.append(f"{{{name}}} may have no format spec or conversion")
    if "path" not in names:
        problems.append("it has no {path}")
    if problems:
        return problems
    url = urlsplit(template.format(**SAMPLE))
    if url.scheme not in ("http", "https") or not url.netloc:
        return ["it does not make an http:// or https:// URL with a host"]
    return []


def linkable(path: str) -> bool:
    """A path that may go into a link: no control characters, no "." or ".." segment."""
    return bool(path) and not any(ord(ch) < 32 or ch == "\x7f" for ch in path) and not any(
        part in (".", "..") for part in path.split("/")
    )


def log_url(path: str, *, kind: str = "", id: object = "", worker: str = "") -> str:
    """The URL of a log file, or "" when no template is set or the path may not be linked."""
    template = settings.LOG_URL_TEMPLATE
    if not template or not linkable(path):
        return ""
    return template.format(path=quote(path, safe="/"), kind=quote(str(kind), safe=""), id=quote(str(id), safe=""),
                           worker=quote(worker or "", safe=""))


def log_link_html(path: str, **context) -> SafeString:
    """The log path as a link (LOG_URL_TEMPLATE set) or as text selected whole by one click; "-" when none."""
    if not path:
        return format_html("{}", "-")
    url = log_url(path, **context)
    if url:
        return format_html('<a class="log-link" href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, path)
    return format_html('<code class="log-path" style="user-select: all;" title="Click to select, then copy">{}</code>',
                       path)
