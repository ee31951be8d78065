"""Operator forms for routes: bundle sizes typed and shown with units (10 TB, 500 GB)."""

import re

from django import forms
from django.core.exceptions import ValidationError

from transfers.models import DataTransferRoute

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MAX_BYTES = 2**63 - 1


def parse_size(text: str) -> int:
    """'10 TB' → 10**12 × 10 bytes; decimal units (kB, MB, GB, TB, PB), binary ones (GiB, TiB), or bytes."""
    match = SIZE.match(text or "")
    unit = match.group(2).upper() if match else None
    if match is None or unit not in UNITS:
        raise ValidationError("Give a size such as 10 TB, 500 GB or 400000 (bytes).")
    value = round(float(match.group(1)) * UNITS[unit])
    if not 0 < value <= MAX_BYTES:
        raise ValidationError("The size must be more than 0 bytes and at most 9.2 EB.")
    return value


def format_size(size: int) -> str:
    """``size`` in the unit that states it exactly and shortest (so saving the form again changes nothing)."""
    for unit in ("PB", "TB", "GB", "MB", "KB", "PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = UNITS[unit.upper()]
        whole, rest = divmod(size, scale)
        if 1 <= whole < 1000 and (rest * 1000) % scale == 0:
            return f"{whole}{f'.{rest * 1000 // scale:03d}'.rstrip('0') if rest else ''} {unit}"
    return f"{size} B"


class ByteSizeField(forms.CharField):
    """Bytes as an integer, typed and shown with units."""

    def prepare_value(self, value):
        if isinstance(value, int):
            return format_size(value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        return parse_size(value) if value not in self.empty_values else None


class RouteAdminForm(forms.ModelForm):
    bundle_target_size = ByteSizeField(
        required=False, help_text="Per transfer package, e.g. 10 TB or 500 GB; empty = the global default."
    )

    class Meta:
        model = DataTransferRoute
        fields = ["bundle_target_size"]  # the admin adds the rest from its fieldsets
