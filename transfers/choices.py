from django.db import models


class RouteType(models.TextChoices):
    DIRECT = "DIRECT", "Direct"
    RELAY = "RELAY", "Relay"
    CUSTOM = "CUSTOM", "Custom (location override)"
