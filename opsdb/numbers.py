"""Numbers and ids read from requests: ASCII digits only.

``str.isdigit()`` is true for "²", which ``int()`` then refuses (a 500 where the test was trusted),
and ``int()`` — so Django's and DRF's integer fields — reads "١" (Arabic-Indic one) or "𝟙" as 1, so
an id written in another script found another record. Requests give numbers in ASCII; a string
with any other character is bad input. An ASCII string makes ``isdigit()`` and ``int()`` agree.
"""

from django import forms
from django.core.exceptions import ValidationError

MAX_ID = 2**63 - 1  # the largest primary key (and 64-bit integer) the databases store


def is_foreign_number(value) -> bool:
    """A string with characters outside ASCII: never a number or an id of ours."""
    return isinstance(value, str) and not value.isascii()


def parse_id(value) -> int | None:
    """A primary key from an int or a string of ASCII digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            return None
        value = int(value)
    if not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_ID else None


class IntegerField(forms.IntegerField):
    """Django's integer form field, for ASCII digits only."""

    def to_python(self, value):
        if is_foreign_number(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class ModelChoiceField(forms.ModelChoiceField):
    """A choice by primary key: ASCII digits within 64 bits, else an invalid choice (not a 500)."""

    def to_python(self, value):
        if value not in self.empty_values and parse_id(str(value)) is None:
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)
