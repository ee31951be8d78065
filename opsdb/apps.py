from django.apps import AppConfig
from django.conf import settings


class OpsdbConfig(AppConfig):
    name = "opsdb"
    verbose_name = "Sites, locations and raw data"

    def ready(self) -> None:
        from opsdb import checks  # noqa: F401  (registers the system check)
        from opsdb.registry import job_kinds, scheduler_passes

        # Every app's models are loaded by now; the declared handlers and passes import them.
        job_kinds.build(settings.JOB_KINDS)
        scheduler_passes.build(settings.SCHEDULER_PASSES)
