from django.apps import AppConfig


class TransfersConfig(AppConfig):
    name = "transfers"
    verbose_name = "Transfers between sites"

    def ready(self) -> None:
        from transfers import work  # noqa: F401  (registers the package, transfer and unpack job kinds)
