from django.apps import AppConfig


class StagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "staging"
    verbose_name = "Archive and staging"

    def ready(self) -> None:
        # Registering the job kind here (not at import of the models) keeps the registry complete
        # for every entry point: API, scheduler, tests.
        from opsdb.work import register
        from staging.work import StageHandler

        register(StageHandler)
