from django.db import models


class StagedPackageState(models.TextChoices):
    """Progress of one package inside a staging job."""

    PENDING = "PENDING", "Waiting"
    STAGED = "STAGED", "Staged"
    REUSED = "REUSED", "Already staged (reused)"
    FAILED = "FAILED", "Failed"


class FixityOutcome(models.TextChoices):
    """What a fixity check found."""

    GOOD = "GOOD", "Checksum matches"
    MISMATCH = "MISMATCH", "Checksum differs"
    MISSING = "MISSING", "File missing"
