"""``GET <prefix>/api/``: where the API's parts are, for a person or a client finding their way."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from jobs.api_input import StrictInputMixin
from jobs.permissions import SignedIn
from jobs.schema import errors

LINKS = {
    "jobs": "job-list",
    "job_types": "job-type-list",
    "queues": "queue-list",
    "stats": "stats",
    "health": "health",
    "alerts": "alert-list",
    "schema": "api-schema",
    "docs": "api-docs",
}


class ApiRootView(StrictInputMixin, APIView):
    """The API's index: a link to each collection, the schema and the docs (wherever it is mounted)."""

    permission_classes = [SignedIn]

    @extend_schema(
        summary="The API's index",
        responses={
            200: inline_serializer("ApiRoot", {name: serializers.URLField() for name in LINKS}),
            **errors(),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({name: reverse(route, request=request) for name, route in LINKS.items()})
