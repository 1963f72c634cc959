"""One place where domain errors become HTTP errors, in DRF's error format; and where a
database outage becomes a 503 instead of a 500."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs import outage, policy
from jobs.exceptions import IdempotencyKeyReused, QueueNotFound, TransitionNotAllowed
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
    if isinstance(exc, IdempotencyKeyReused):
        # RFC draft "The Idempotency-Key HTTP Header Field": a key reused with another payload is a 422.
        return Response({"detail": str(exc), "code": "idempotency_key_reused"}, status=422)
    if isinstance(exc, RequestDataTooBig):  # Django refused the body before reading it all
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"detail": f"The request body is larger than {limit} bytes.", "code": "body_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
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
    """``handler404``: an unknown path under the API is a JSON 404 like every other API error."""
    if policy.is_api_path(request.path_info):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


# How long a client should wait before it tries again while the database is out.
RETRY_AFTER_SECONDS = 5
DISK_FULL_RETRY_AFTER_SECONDS = 60


class DatabaseUnavailableMiddleware:
    """A request that meets a database outage gets a 503 with ``Retry-After``, not a 500.

    The request's writes were in a transaction that did not commit, so trying again later
    is safe. Under ``/api/`` the body is DRF's error format with the code
    ``database_unavailable``, or ``disk_full`` when the database said its disk is full (health
    reports that too, ``jobs.outage.disk_full_seen``); a page gets a short text. Last in ``MIDDLEWARE``, so that it
    sees the exceptions of every view, the API's (DRF re-raises what it does not handle)
    and the admin's alike.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not outage.is_outage(exception):
            return None
        outage.drop_connection()
        if outage.disk_full_noted(exception):
            # Not "try again shortly": nothing changes until someone frees space.
            code, retry_after = "disk_full", DISK_FULL_RETRY_AFTER_SECONDS
            message = "The database's disk is full; nothing was changed. Writes fail until space is freed."
        else:
            code, retry_after = "database_unavailable", RETRY_AFTER_SECONDS
            message = "The database is unavailable; nothing was changed. Try again shortly."
        response: HttpResponse
        if policy.is_api_path(request.path_info):
            response = JsonResponse({"detail": message, "code": code}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(retry_after)
        return response
