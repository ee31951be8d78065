from django.apps import AppConfig


class OpsdbConfig(AppConfig):
    name = "opsdb"
    verbose_name = "Sites, locations and raw data"
