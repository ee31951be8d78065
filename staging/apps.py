from importlib import import_module
from importlib.util import find_spec

from django.apps import AppConfig


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Archive and staging"

    def ready(self) -> None:
        import_module("staging.archive_work")  # registers the ``archive`` job kind
        if find_spec("staging.work"):  # the ``stage`` job kind, when its module is there
            import_module("staging.work")
