"""The documented error responses: ``errors(...)`` lists an operation's error responses with
their bodies, so every view of every app documents them alike; the bodies are those
``jobs.api.errors`` produces. (A serializer as JSON Schema: ``jobs.api.json_schema``.)
"""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from jobs.api.input import StrictSerializer
from jobs.api.serializers import CodedErrorSerializer, ErrorSerializer, TransitionErrorSerializer

# --- Error responses --------------------------------------------------------------------------


class ValidationErrorSerializer(serializers.Serializer):
    """The 400 body: each field (or ``non_field_errors``, or ``detail`` for unreadable JSON) and its messages.

    A nested field's messages are nested the same way (``{"params": {"items": ["..."]}}``).
    Its schema is written by ``_ValidationErrorSchema``: DRF has no field for "any key".
    """


# One field's messages. A nested field's are a ValidationError of their own, to any depth: the
# recursion goes through that object (generated clients resolve no union that refers to itself).
FIELD_ERRORS = {
    "description": "A field's messages; for a nested field (params, a bulk member by index) its fields' messages.",
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"$ref": "#/components/schemas/ValidationError"},
        {"type": "string"},
    ],
}


class _ValidationErrorSchema(OpenApiSerializerExtension):
    target_class = ValidationErrorSerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        component = ResolvedComponent(
            name="FieldErrors", type=ResolvedComponent.SCHEMA, object="FieldErrors", schema=copy.deepcopy(FIELD_ERRORS)
        )
        auto_schema.registry.register_on_missing(component)
        return {
            "type": "object",
            "description": "Field name → its messages (nested for nested fields).",
            "additionalProperties": component.ref,
        }


class _StrictSerializerSchema(OpenApiSerializerExtension):
    """A ``StrictSerializer``'s request body forbids the fields it does not name, as the API does."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(ValidationErrorSerializer, description="Bad input: field name → list of messages."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Authenticated but not allowed (or CSRF failed)."),
    404: OpenApiResponse(ErrorSerializer, description="No such object, or one the caller may not see."),
    409: OpenApiResponse(TransitionErrorSerializer, description="Illegal transition; `status` is the current one."),
    413: OpenApiResponse(
        CodedErrorSerializer,
        description="The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (`code`: body_too_large).",
    ),
    422: OpenApiResponse(
        CodedErrorSerializer,
        description="The Idempotency-Key was used for another request (`code`: idempotency_key_reused).",
    ),
    429: OpenApiResponse(ErrorSerializer, description="Throttled; see the Retry-After header."),
}


def errors(*codes: int, anonymous: bool = False) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation: ``codes``, plus 400 (an unknown query
    parameter, ``jobs.api.input``), 401 and 429, which apply to all.

    ``anonymous=True`` for an operation anyone may call: no 401.
    """
    always = {400, 429} if anonymous else {400, 401, 429}
    return {code: ERROR_RESPONSES[code] for code in sorted({*always, *codes})}
