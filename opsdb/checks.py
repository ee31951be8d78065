"""System checks: every declared job kind and scheduler pass could be built (``opsdb.registry``)."""

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from opsdb.registry import job_kinds, scheduler_passes


@checks.register()
def declared_plugins(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start with a declared kind or pass that could not be built, or a job model with no kind."""
    return [*job_kinds.problems, *scheduler_passes.problems]


@checks.register()
def custody_archive_sites(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """settings.CUSTODY_ARCHIVE_SITES names a function that can be imported."""
    try:
        import_string(settings.CUSTODY_ARCHIVE_SITES)
    except ImportError as exc:
        return [checks.Error(f"settings.CUSTODY_ARCHIVE_SITES names {settings.CUSTODY_ARCHIVE_SITES!r}, which "
                             f"cannot be imported: {exc}", id="opsdb.E009")]
    return []
