"""Serializer fields shared by the work protocol and ingest."""

from rest_framework import serializers

from opsdb.models import file_name_validator, relative_path_validator
from opsdb.numbers import is_foreign_number, parse_id

CHECKSUM_MAX_LENGTH = 128


class ChecksumField(serializers.RegexField):
    """A hex digest, stored lower-case."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", CHECKSUM_MAX_LENGTH)
        kwargs.setdefault("error_messages", {"invalid": "Give the checksum as a hex digest."})
        super().__init__(r"^[0-9a-fA-F]+$", **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data).lower()


class RelativePathField(serializers.CharField):
    """A path relative to a location's base path (``opsdb.models.relative_path_validator``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(relative_path_validator)


class FileNameField(serializers.CharField):
    """A name that becomes a file name at the sites (``opsdb.models.file_name_validator``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 255)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(file_name_validator)


class LogPathField(serializers.CharField):
    """Where the worker wrote the detailed log of the job: any path, but one line of printable text."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not value.isprintable():
            raise serializers.ValidationError("Give the log file's path as printable text (no control characters).")
        return value


class IntegerField(serializers.IntegerField):
    """DRF's integer field, for JSON numbers and ASCII digits only (see ``opsdb.numbers``)."""

    def to_internal_value(self, data):
        if is_foreign_number(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class PrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related record by id: ASCII digits within 64 bits, else 'does not exist' (never another record)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and parse_id(data) is None:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)
