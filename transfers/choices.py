from django.db import models


class RouteType(models.TextChoices):
    DIRECT = "DIRECT", "Direct"
    RELAY = "RELAY", "Relay"
    CUSTOM = "CUSTOM", "Custom (location override)"


class RouteState(models.TextChoices):
    """Whether a route's transfers may be claimed (DESIGN.md: a paused route's transfers are held)."""

    ACTIVE = "ACTIVE", "Active"
    PAUSED_AUTO = "PAUSED_AUTO", "Paused (automatically)"
    PAUSED_MANUAL = "PAUSED_MANUAL", "Paused (by an operator)"


PAUSED_STATES = (RouteState.PAUSED_AUTO, RouteState.PAUSED_MANUAL)
