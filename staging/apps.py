from importlib import import_module

from django.apps import AppConfig


class StagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "staging"
    verbose_name = "Archive and staging"

    def ready(self) -> None:
        # Importing the module registers the ``stage`` job kind (``@register``) for every entry
        # point: API, scheduler, tests.
        import_module("staging.work")
