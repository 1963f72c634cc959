"""``GET <prefix>/api/``: where the API's parts are; the schema and its interactive docs, with
JobAdmin's own authentication and drf-spectacular settings whatever the project's."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse as url_reverse
from drf_spectacular.settings import patched_settings
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from jobs import policy
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
    "alert_rules": "alert-rule-list",
    "schema": "api-schema",
    "docs": "api-docs",
    "redoc": "api-redoc",
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


class _OwnSettings:
    """drf-spectacular's UI views read its global settings when they render: give them JobAdmin's
    (``SPECTACULAR``: Swagger UI and ReDoc from the sidecar's static files), whatever the project's."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with patched_settings(SPECTACULAR):
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class ApiDocsView(_OwnSettings, SpectacularSwaggerSplitView):
    """``GET api/docs/``: Swagger UI on that schema. The split view serves its start-up script from
    the same URL (``?script``), so the page needs no inline script (the CSP's ``script-src 'self'``)."""

    authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    permission_classes = [SignedIn]
    schema = None
    title = str(SPECTACULAR["TITLE"])


class ApiRedocView(_OwnSettings, SpectacularRedocView):
    """``GET api/redoc/``: ReDoc on that schema, without the web fonts the stock template fetches."""

    authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    permission_classes = [SignedIn]
    schema = None
    title = str(SPECTACULAR["TITLE"])
    template_name = "jobadmin/redoc.html"


def landing_view(request: HttpRequest) -> HttpResponse:
    """``/`` of the standalone project (and the admin's "View site"): each kind of user to where
    they belong. Anonymous: the admin's login, back here after it. Who may see every job
    (``jobs.view_job``): the live monitor. Anyone else signed in (a user, staff without that
    permission): their own jobs in the API (the admin's job list needs ``jobs.view_job``)."""
    if not policy.signed_in(request.user):
        return redirect_to_login(request.get_full_path(), url_reverse("admin:login"))
    if policy.may_see_statistics(request.user):
        return HttpResponseRedirect(url_reverse("admin:jobadmin-monitor"))
    return HttpResponseRedirect(url_reverse("job-list"))
