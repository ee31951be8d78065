from django.apps import AppConfig
from django.conf import settings


class OpsdbConfig(AppConfig):
    name = "opsdb"
    verbose_name = "Sites, locations and raw data"

    def ready(self) -> None:
        from opsdb import checks, deploy_checks  # noqa: F401  (register the system checks)
        from opsdb.prepared import cache_long_statements
        from opsdb.registry import job_kinds, scheduler_passes
        from opsdb.tokens import connect_cache_invalidation

        # Every app's models are loaded by now; the declared handlers and passes import them.
        job_kinds.build(settings.JOB_KINDS)
        scheduler_passes.build(settings.SCHEDULER_PASSES)
        connect_cache_invalidation()
        cache_long_statements()
