from django.db import models


class RouteType(models.TextChoices):
    DIRECT = "DIRECT", "Direct"
    RELAY = "RELAY", "Relay"
    CUSTOM = "CUSTOM", "Custom (location override)"


class TransferMethod(models.TextChoices):
    BBCP = "bbcp", "bbcp"
    S3 = "s3", "S3"
    RSYNC = "rsync", "rsync"
    COPY = "copy", "Local copy"
