from importlib import import_module

from django.apps import AppConfig


class StagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "staging"
    verbose_name = "Archive and staging"

    def ready(self) -> None:
        # Importing a kind's module registers its handler (``@register``) for every entry point.
        import_module("staging.archive_work")  # the ``archive`` job kind
        import_module("staging.work")  # the ``stage`` job kind
