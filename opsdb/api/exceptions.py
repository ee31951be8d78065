"""One error format for the whole API: 400 field errors, 409 ``{"detail", "status"}``, never 500.

DRF handles its own exceptions; this adds the domain ones raised by services and models.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from opsdb.services import LeaseConflict
from opsdb.views import database_unavailable, is_database_unavailable


def validation_error_body(exc: DjangoValidationError) -> dict:
    """Django's ValidationError as DRF field errors (non-field messages under ``non_field_errors``)."""
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    return {"non_field_errors": exc.messages}


def conflict(detail: str, current_status: str | None = None) -> Response:
    body = {"detail": detail}
    if current_status is not None:
        body["status"] = current_status
    return Response(body, status=status.HTTP_409_CONFLICT)


def api_exception_handler(exc, context):
    if is_database_unavailable(exc):
        return database_unavailable(context["request"])
    if isinstance(exc, LeaseConflict):
        return conflict(str(exc), exc.job.status)
    if isinstance(exc, TransitionNotAllowed):
        job = getattr(exc, "object", None)
        return conflict(str(exc) or "This transition is not allowed now.", getattr(job, "status", None))
    if isinstance(exc, ConcurrentTransition):
        return conflict("Someone else changed this job at the same time; read it again and retry.")
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"non_field_errors": [f"The request body is larger than {limit} bytes."]},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response(validation_error_body(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ProtectedError | RestrictedError):
        return conflict("Other records still refer to this one; it cannot be deleted.")
    if isinstance(exc, IntegrityError):
        # A database constraint or trigger refused the write (a rule that spans rows or tables).
        return Response({"non_field_errors": [str(exc).splitlines()[0]]}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
