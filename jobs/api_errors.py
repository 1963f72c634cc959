"""One place where domain errors become HTTP errors, in DRF's error format."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.exceptions import QueueNotFound, TransitionNotAllowed
from jobs.policy import AccessDenied
from jobs.registry import UnknownJobType


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TransitionNotAllowed):
        response = Response(
            {"detail": str(exc), "code": "illegal_transition", "action": exc.action, "status": exc.status},
            status=status.HTTP_409_CONFLICT,
        )
        return response
    if isinstance(exc, AccessDenied):
        exc = exceptions.PermissionDenied(str(exc))
    elif isinstance(exc, UnknownJobType):
        exc = exceptions.ValidationError({"type": [f"Unknown job type {exc.args[0]!r}."]})
    elif isinstance(exc, QueueNotFound):
        exc = exceptions.ValidationError({"queue": [str(exc)]})
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: an unknown path under ``/api/`` is a JSON 404 like every other API error."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
