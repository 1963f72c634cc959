"""``GET <prefix>/api/``: where the API's parts are; the schema and its interactive docs, with
JobAdmin's own authentication and drf-spectacular settings whatever the project's."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from jobs.api.input import StrictInputMixin
from jobs.api.permissions import SignedIn
from jobs.api.schema import errors
from jobs.api.settings import SPECTACULAR, JobAdminAPI, api_settings

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


class ApiRootView(JobAdminAPI, StrictInputMixin, APIView):
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


class ApiSchemaView(SpectacularAPIView):
    """``GET api/schema/``: OpenAPI 3 of JobAdmin's operations only; a login needed, like the API."""

    authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    permission_classes = [SignedIn]
    custom_settings = SPECTACULAR
    schema = None  # not an operation of the document it serves


class ApiDocsView(SpectacularSwaggerView):
    """``GET api/docs/``: the interactive docs of that schema."""

    authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    permission_classes = [SignedIn]
    schema = None
