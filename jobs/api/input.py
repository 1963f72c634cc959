"""What the API reads, bounded and exact (docs/security.md, "Input limits"; DESIGN.md "JSON API").

- ``BoundedJSONParser``: a body nested deeper than ``JOBADMIN_MAX_JSON_DEPTH`` is a 400
  (Python's ``json`` raised ``RecursionError`` near a thousand levels: a 500). A body over
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is refused by Django, a 413 (``jobs.api.errors``).
- ``StrictInputMixin``: an unknown query parameter, or a body field on an action that
  takes no body, is a 400 naming it. The known query parameters of a request are
  ``format``, the filters (``params.<key>`` ones included) and page parameters of a list,
  and the fields of the query serializer the view declares for the action
  (``query_serializers``).
- ``StrictSerializer``: an input serializer that refuses fields it does not name, nested
  ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.settings import api_settings

from jobs.limits import TooDeep, check_depth

UNKNOWN_QUERY = "Unknown query parameter."
UNKNOWN_FIELD = "Unknown field."


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing a body nested deeper than ``JOBADMIN_MAX_JSON_DEPTH``.

    Its size is Django's to bound: DRF reads a JSON body through ``request.body``, which
    refuses one over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` from its ``Content-Length`` before
    reading it (or, chunked, after one byte past the limit); ``jobs.api.errors`` makes that
    a JSON 413.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # Python's json gives up near a thousand levels
            raise exceptions.ParseError(_deep_message()) from None
        try:
            check_depth(data)
        except TooDeep:
            raise exceptions.ParseError(_deep_message()) from None
        return data


def _deep_message() -> str:
    return f"JSON parse error - nested deeper than {settings.JOBADMIN_MAX_JSON_DEPTH} levels."


class StrictSerializer(serializers.Serializer):
    """Refuses input fields it does not name (each ``"Unknown field."``); nested ones too,
    when they are ``StrictSerializer`` s as well."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data if key not in writable)
            if unknown:
                raise serializers.ValidationError({key: [UNKNOWN_FIELD] for key in unknown})
        return super().to_internal_value(data)


class StrictInputMixin:
    """For API views: refuses query parameters and body fields the action does not read.

    Runs after authentication, permissions and throttles (a stranger still gets 401), and
    before the handler, so nothing is changed by a refused request.
    """

    #: The query serializer of each action (viewsets) or method (``"get"``, plain views).
    query_serializers: ClassVar[Mapping[str, type[serializers.Serializer]]] = {}
    #: The actions (or methods) that read a body; any other refuses a non-empty one.
    body_actions: ClassVar[frozenset[str]] = frozenset()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):  # type: ignore[attr-defined]
            return  # a 405 comes first
        unknown = sorted(set(request.query_params) - self.known_query_params(request))
        if unknown:
            raise exceptions.ValidationError({name: [UNKNOWN_QUERY] for name in unknown})
        if request.method not in ("GET", "HEAD", "OPTIONS") and self._input_key(request) not in self.body_actions:
            body = request.data
            if isinstance(body, Mapping) and body:
                raise exceptions.ValidationError({str(key): [UNKNOWN_FIELD] for key in sorted(body)})
            if body and not isinstance(body, Mapping):
                raise exceptions.ValidationError({"non_field_errors": ["This action takes no body."]})

    def _input_key(self, request: Request) -> str:
        return getattr(self, "action", None) or (request.method or "").lower()

    def _lists(self, request: Request) -> bool:
        action = getattr(self, "action", None)
        if action is not None:
            return bool(action == "list")
        return request.method == "GET" and hasattr(self, "list")

    def known_query_params(self, request: Request) -> set[str]:
        known = {api_settings.URL_FORMAT_OVERRIDE} if api_settings.URL_FORMAT_OVERRIDE else set()
        if self._lists(request):
            filterset = getattr(self, "filterset_class", None)
            if filterset is not None:
                known |= set(filterset.base_filters)
                # Parameters by prefix (``params.<key>``): the filterset validates the rest of the name.
                if prefix := getattr(filterset, "param_prefix", None):
                    known |= {name for name in request.query_params if name.startswith(prefix)}
            paginator = getattr(self, "paginator", None)
            for attr in ("page_query_param", "page_size_query_param"):
                if name := getattr(paginator, attr, None):
                    known.add(name)
        query = self.query_serializers.get(self._input_key(request))
        if query is not None:
            known |= set(query().fields)
        return known
