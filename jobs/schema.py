"""The API's schemas in one place: serializers as JSON Schema, and the documented error responses.

- ``serializer_json_schema`` turns a serializer into a strict JSON Schema (every object
  names its fields and forbids others), with drf-spectacular's own field mapping, so a
  job type's params, and a websocket message whose body is an API body (``job-stats``),
  are described by the same serializer as the API.
- ``errors(...)`` lists an operation's error responses with their bodies, so every view
  of every app documents them alike; the bodies are those ``jobs.api_errors`` produces.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.views import APIView

from jobs.api_input import StrictSerializer
from jobs.serializers import CodedErrorSerializer, ErrorSerializer, TransitionErrorSerializer


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` becomes JSON Schema's ``"null"`` type; vendor keys go."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if not key.startswith("x-")}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:  # a nullable reference: {"allOf": [{"$ref": ...}], "nullable": true}
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _inline(node: Any, components: dict[str, Any]) -> Any:
    """Replace ``$ref``s to registered components by the components themselves."""
    if isinstance(node, list):
        return [_inline(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"$ref"}:
        return _inline(components[node["$ref"].rsplit("/", 1)[-1]], components)
    if "allOf" in node and len(node["allOf"]) == 1 and set(node) <= {"allOf", "nullable", "description", "readOnly"}:
        inner = dict(_inline(node["allOf"][0], components))
        if node.get("nullable"):
            inner["nullable"] = True
        return inner
    return {key: _inline(value, components) for key, value in node.items()}


def _closed(node: Any) -> Any:
    """Every object that names its properties forbids others (``additionalProperties: false``)."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    out.pop("readOnly", None)
    return out


@cache
def serializer_json_schema(
    serializer_class: type[serializers.Serializer], direction: Literal["request", "response"] = "request"
) -> dict[str, Any]:
    """The JSON Schema of what ``serializer_class`` accepts (request) or produces (response).

    Nested serializers are inlined, nullable fields take JSON Schema's ``null`` type, and
    every object forbids the fields it does not name.
    """
    view = APIView()
    view.request = None  # type: ignore[assignment]
    view.format_kwarg = None
    inspector = AutoSchema()
    inspector.registry = ComponentRegistry()
    inspector.method = "POST" if direction == "request" else "GET"
    inspector.path = "/"
    inspector.view = view
    schema = inspector._map_serializer(serializer_class(), direction)
    components = inspector.registry.build({}).get("schemas", {})
    schema = _closed(_to_json_schema(_inline(schema, components)))
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- Error responses --------------------------------------------------------------------------


class ValidationErrorSerializer(serializers.Serializer):
    """The 400 body: each field (or ``non_field_errors``, or ``detail`` for unreadable JSON) and its messages.

    A nested field's messages are nested the same way (``{"params": {"items": ["..."]}}``).
    Its schema is written by ``_ValidationErrorSchema``: DRF has no field for "any key".
    """


class _ValidationErrorSchema(OpenApiSerializerExtension):
    target_class = ValidationErrorSerializer

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "Field name → its messages (nested for nested fields).",
            "additionalProperties": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "object", "additionalProperties": True},
                    {"type": "string"},
                ]
            },
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
    parameter, ``jobs.api_input``), 401 and 429, which apply to all.

    ``anonymous=True`` for an operation anyone may call: no 401.
    """
    always = {400, 429} if anonymous else {400, 401, 429}
    return {code: ERROR_RESPONSES[code] for code in sorted({*always, *codes})}
