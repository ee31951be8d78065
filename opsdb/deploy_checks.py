"""Start-up checks for production (DEBUG=0) that Django's own ``check --deploy`` does not make.

- ``LOG_URL_TEMPLATE`` must make http(s) links (``opsdb.checks``; also when DEBUG is on).
- The static files must have been collected: with the manifest storage every page that links a
  stylesheet fails ("Missing staticfiles manifest entry") until ``manage.py collectstatic`` ran.

They run with ``manage.py check --deploy`` and when the WSGI application starts (``opsdb/wsgi.py``),
so gunicorn refuses to start with a message instead of serving pages that fail.
"""

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from opsdb.checks import log_url_template

STATIC_NOT_COLLECTED = "opsdb.E101"  # E001–E007: the job-kind registry (opsdb/checks.py)


@register("opsdb", deploy=True)
def static_files_collected(app_configs=None, **kwargs) -> list[Error]:
    """The manifest of collected static files exists wherever the storage needs one."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):  # DEBUG serves files from the apps
        return []
    manifest = staticfiles_storage.manifest_name
    if staticfiles_storage.manifest_storage.exists(manifest):
        return []
    return [Error(
        f"The static files have not been collected: {settings.STATIC_ROOT}/{manifest} is missing, so every "
        "page fails with 'Missing staticfiles manifest entry'.",
        hint="Run `manage.py collectstatic --no-input` after each install or upgrade (STATIC_ROOT sets the folder).",
        id=STATIC_NOT_COLLECTED,
    )]


def refuse_unsafe_start() -> None:
    """Raise ImproperlyConfigured when a server would serve broken pages or links (see the checks above)."""
    errors = log_url_template()
    if not settings.DEBUG:
        errors += static_files_collected()
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} {e.hint}" for e in errors))
