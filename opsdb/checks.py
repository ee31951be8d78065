"""System checks: every declared job kind and scheduler pass could be built (``opsdb.registry``), and
the settings that name code or make URLs are usable."""

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from opsdb.log_links import FIELDS, template_problems
from opsdb.registry import job_kinds, scheduler_passes

LOG_URL_TEMPLATE_REFUSED = "opsdb.E020"


@checks.register()
def declared_plugins(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start with a declared kind or pass that could not be built, or a job model with no kind."""
    return [*job_kinds.problems, *scheduler_passes.problems]


@checks.register()
def declared_functions(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """settings.CUSTODY_ARCHIVE_SITES, SITE_ROUTE_METHODS and RAW_PACKAGE_EXPLAINER name functions that can be
    imported."""
    problems = []
    for name in ("CUSTODY_ARCHIVE_SITES", "SITE_ROUTE_METHODS", "RAW_PACKAGE_EXPLAINER"):
        try:
            import_string(getattr(settings, name))
        except ImportError as exc:
            problems.append(checks.Error(f"settings.{name} names {getattr(settings, name)!r}, which cannot be "
                                         f"imported: {exc}", id="opsdb.E009"))
    return problems


@checks.register()
def log_url_template(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """settings.LOG_URL_TEMPLATE (when set) makes an http(s) link from a log path, and nothing else."""
    problems = template_problems(settings.LOG_URL_TEMPLATE)
    if not problems:
        return []
    return [checks.Error(
        f"LOG_URL_TEMPLATE {settings.LOG_URL_TEMPLATE!r} cannot be used: {'; '.join(problems)}.",
        hint="e.g. https://logs.example.org/files{path}; placeholders: "
             + ", ".join("{" + f + "}" for f in FIELDS) + " ({path} required). Leave it empty to show paths as text.",
        id=LOG_URL_TEMPLATE_REFUSED,
    )]
