"""A job type's params serializer as JSON Schema, produced by drf-spectacular's field mapping."""

from __future__ import annotations

from functools import cache
from typing import Any

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
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@cache
def serializer_json_schema(serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    view = APIView()
    view.request = None  # type: ignore[assignment]
    view.format_kwarg = None
    inspector = AutoSchema()
    inspector.registry = ComponentRegistry()
    inspector.method = "POST"
    inspector.path = "/"
    inspector.view = view
    schema = inspector._map_serializer(serializer_class(), "request")
    schema = _to_json_schema(schema)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
