"""A serializer as JSON Schema: the one description of a job type's params (``GET
/api/job-types/``) and of a websocket message whose body is an API body (``job-stats``),
with drf-spectacular's own field mapping, so the API's schema and these agree.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from rest_framework import serializers
from rest_framework.views import APIView


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


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def openapi_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (such as a websocket message's, ``live.messages``) as OpenAPI 3.0 writes it.

    The inverse of ``_to_json_schema``: a ``"null"`` type becomes ``nullable``, ``const`` a
    one-value ``enum``, and an ``enum`` gets the type of its values. A schema that types
    nothing (``{}``) is refused: what the API documents is typed.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$schema":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: openapi_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_schema(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [openapi_schema(sub) for sub in value]
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        of_values = {_JSON_TYPES[type(value)] for value in out["enum"] if value is not None}
        if len(of_values) != 1:
            raise ValueError(f"An enum of one JSON type, not {sorted(of_values)}: {node}")
        out["type"] = of_values.pop()
    if isinstance(out.get("type"), list):
        named = [name for name in out["type"] if name != "null"]
        if len(named) != 1:
            raise ValueError(f"One type, or one and null: {node}")
        out["type"] = named[0]
        if len(named) < len(node["type"]):
            out["nullable"] = True
    if "enum" in out and None in out["enum"]:
        out["enum"] = [value for value in out["enum"] if value is not None]
        out["nullable"] = True
    if not set(out) - {"description", "title", "nullable"}:
        raise ValueError(f"An untyped schema: {node}")
    return out
