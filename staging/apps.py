from django.apps import AppConfig


class StagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "staging"
    verbose_name = "Archive and staging"
