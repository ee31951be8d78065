from django.apps import AppConfig


class OpsdbConfig(AppConfig):
    name = "opsdb"
    verbose_name = "Sites, locations and raw data"

    def ready(self) -> None:
        from opsdb import checks  # noqa: F401  (registers the deploy checks)
        from opsdb.tokens import connect_cache_invalidation

        connect_cache_invalidation()
