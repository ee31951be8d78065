"""Forms of the scientists' pages: searching the catalogue and requesting staging."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone

from opsdb import numbers
from opsdb.choices import LocationType
from opsdb.models import DataLocation, Instrument, RawDataPackage


class DateInput(forms.DateInput):
    input_type = "date"


BoundedModelChoiceField = numbers.ModelChoiceField  # ASCII ids within 64 bits (SQLite overflows past them)


class SearchForm(forms.Form):
    """Find raw packages by their observation (instrument, target, date) or by package name."""

    instrument = BoundedModelChoiceField(Instrument.objects.all(), required=False, empty_label="Any instrument")
    target = forms.CharField(required=False, max_length=200, label="Target name",
                             widget=forms.TextInput(attrs={"placeholder": "how it begins, e.g. Orion"}))
    date_from = forms.DateField(required=False, label="Observed from", widget=DateInput)
    date_to = forms.DateField(required=False, label="Observed until", widget=DateInput)
    package = forms.CharField(required=False, max_length=255, label="Package name",
                              widget=forms.TextInput(attrs={"placeholder": "how it begins"}))

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError({"date_to": "The end date must not be before the start date."})
        return data

    def filter(self, packages: QuerySet[RawDataPackage]) -> QuerySet[RawDataPackage]:
        """``packages`` narrowed by the valid criteria (all of them when the form is invalid).

        Names match from their start, not case-sensitive (``UPPER(column)`` prefix indexes on
        PostgreSQL: a substring would scan every package); dates are ranges on the observation's
        start time (its index), not the date of every start time.
        """
        if not self.is_valid():
            return packages.none()
        data = self.cleaned_data
        conditions = Q()
        if data["instrument"]:
            conditions &= Q(observation__instrument=data["instrument"])
        if data["target"]:
            conditions &= Q(observation__target_name__istartswith=data["target"].strip())
        if data["date_from"]:
            conditions &= Q(observation__start_time__gte=start_of_day(data["date_from"]))
        if data["date_to"]:
            if data["date_to"] < date.max:  # the last day there is: no end
                conditions &= Q(observation__start_time__lt=start_of_day(data["date_to"] + timedelta(days=1)))
        if data["package"]:
            conditions &= Q(name__istartswith=data["package"].strip())
        return packages.filter(conditions)


def start_of_day(day: date) -> datetime:
    """Midnight of ``day`` in the current time zone (the zone ``__date`` lookups use)."""
    return timezone.make_aware(datetime.combine(day, time.min))


class ProcessingLocationField(BoundedModelChoiceField):
    def label_from_instance(self, obj: DataLocation) -> str:
        return f"{obj} — {obj.base_path}"


class StagingRequestForm(forms.Form):
    """Where to stage the selection, for how long, and why; the service does the real checks."""

    destination_location = ProcessingLocationField(
        # Any location validates, so a non-processing one gets the service's clear refusal
        # instead of a bare "invalid choice"; the menu offers only processing areas.
        DataLocation.objects.select_related("site"), label="Stage to", empty_label="Choose a processing area",
        error_messages={"required": "Choose a processing location to stage to.",
                        "invalid_choice": "That location does not exist."},
    )
    lifetime_days = numbers.IntegerField(
        required=False, min_value=1, label="Keep the data for (days)",
        error_messages={"min_value": "The lifetime must be at least one day."},
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)

    def clean_lifetime_days(self) -> int | None:
        # Past the maximum here already: a huge number would overflow a timedelta.
        days = self.cleaned_data["lifetime_days"]
        if days is not None and days > settings.STAGING_MAX_LIFETIME_DAYS:
            raise ValidationError(f"The lifetime can be at most {settings.STAGING_MAX_LIFETIME_DAYS} days.")
        return days

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        max_days = settings.STAGING_MAX_LIFETIME_DAYS
        field = self.fields["lifetime_days"]
        field.initial = settings.STAGING_DEFAULT_LIFETIME_DAYS
        field.help_text = f"Default {settings.STAGING_DEFAULT_LIFETIME_DAYS} days, at most {max_days}."
        field.widget.attrs.update({"max": max_days, "min": 1})
        processing = DataLocation.objects.active().of_type(LocationType.PROCESSING).select_related("site")
        self.fields["destination_location"].widget.choices = [("", "Choose a processing area")] + [
            (loc.pk, f"{loc} — {loc.base_path}") for loc in processing
        ]

    def add_service_errors(self, error: ValidationError) -> None:
        """Show the service's field errors on this form; the selection's errors above the form."""
        for field, messages in error.message_dict.items():
            target = {"lifetime": "lifetime_days"}.get(field, field)
            self.add_error(target if target in self.fields else None, messages)
