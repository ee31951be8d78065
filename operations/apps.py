from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """The operators' view of the flow: the dashboard at /ops/, its history, stuck work and /metrics."""

    name = "operations"
    verbose_name = "Operations view"
    default_auto_field = "django.db.models.BigAutoField"
