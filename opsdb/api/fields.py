"""Serializer fields shared by the work protocol and ingest."""

from pathlib import PurePosixPath

from rest_framework import serializers

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
    """A path relative to a location's base path: not absolute, no '..'."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            raise serializers.ValidationError("Give a path relative to the location's base path, without '..'.")
        return value


class LogPathField(serializers.CharField):
    """Where the worker wrote the detailed log of the job."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)
