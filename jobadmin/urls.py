"""What a project includes: ``path("ops/", include("jobadmin.urls"))``.

Under that prefix: the JSON API at ``api/`` (its schema at ``api/schema/``, the interactive
docs at ``api/docs/``, ReDoc at ``api/redoc/``; the live stream, SSE and long-poll, at ``api/stream/``,
``api/jobs/<id>/stream/`` and ``api/events/``) and Prometheus at ``metrics``. The staff pages are on the project's own
admin site (``console``), the websocket in its ASGI application (``jobadmin.routing``). No
path is written into a page or a script: each is reversed, so any prefix serves.
"""

from django.urls import URLPattern, URLResolver, include, path

from jobadmin.views import ApiDocsView, ApiRedocView, ApiRootView, ApiSchemaView
from monitoring.views import prometheus_metrics

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("", ApiRootView.as_view(), name="jobadmin-api"),
    path("", include("live.urls")),
    path("", include("jobs.api.urls")),
    path("", include("monitoring.urls")),
    path("schema/", ApiSchemaView.as_view(), name="api-schema"),
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", ApiRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/", include(api_urlpatterns)),
    path("metrics", prometheus_metrics, name="prometheus-metrics"),
]
