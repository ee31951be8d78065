"""System checks: every declared job kind and scheduler pass could be built (``opsdb.registry``)."""

from django.core import checks

from opsdb.registry import job_kinds, scheduler_passes


@checks.register()
def declared_plugins(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start with a declared kind or pass that could not be built, or a job model with no kind."""
    return [*job_kinds.problems, *scheduler_passes.problems]
