"""JobAdmin's own API settings: its views carry their authentication, permissions, parsers,
renderers, throttles, filters and error handling, whatever the project's ``REST_FRAMEWORK``.

DRF reads most of those from one global (``rest_framework.settings.api_settings``, the
project's ``REST_FRAMEWORK``): a host that sets ``DEFAULT_PERMISSION_CLASSES = [AllowAny]`` for
its own API would open JobAdmin's, and JobAdmin's ``EXCEPTION_HANDLER`` would change the
host's errors. So every JobAdmin view is a ``JobAdminAPI``: its class attributes and its
``settings`` (which DRF's ``APIView`` asks for the exception handler, the format override and
the view's name) come from ``jobadmin.conf.API``, and the throttles read their rates from
``JOBADMIN_API_THROTTLE_RATES``. The schema view keeps to JobAdmin's operations
(``only_jobadmin_endpoints``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.settings import DEFAULTS, IMPORT_STRINGS, APISettings

# JobAdmin's own Django REST framework settings: its views read these, never
# the project's REST_FRAMEWORK, so a host's API and JobAdmin's never change each other.
API = {
    # Token first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["jobs.api.permissions.SignedIn"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": ["jobs.api.input.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # The limits count in the cache (Redis); while it is away, in each process (jobs.api.throttling).
    "DEFAULT_THROTTLE_CLASSES": ["jobs.api.throttling.UserRateThrottle", "jobs.api.throttling.AnonRateThrottle"],
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
}

# drf-spectacular for JobAdmin's schema view (custom_settings), whatever the project's own says.
SPECTACULAR = {
    "TITLE": "JobAdmin API",
    "DESCRIPTION": "Run, watch and steer background jobs.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    # Alerts and jobs both have a "status" field with different choices.
    "ENUM_NAME_OVERRIDES": {
        "AlertStatusEnum": "monitoring.models.AlertStatus",
        "JobStatusEnum": "jobs.models.JobStatus",
        "HealthStatusEnum": "monitoring.health.STATUSES",
        # A batch's status (running, then how it ended) against a job's and an alert's.
        "BatchStatusEnum": "jobs.services.batches.BatchStatus.ALL",
        # An event's kind (every kind) against a long-polled job-update's (a job's own kinds only).
        "KindEnum": "jobs.models.EventKind",
        "JobUpdateKindEnum": "live.messages.JOB_EVENT_KINDS",
        # An alert rule's metric against the trends' metric (monitoring.analytics.TREND_METRICS).
        "AlertRuleMetricEnum": "monitoring.models.Metric",
        # The bulk request's `action` and a job's `actions`: one choice set, one name.
        "ActionEnum": "jobs.models.ACTION_NAMES",
    },
    # Only JobAdmin's own operations, wherever the project mounts them (a host has its own API).
    "PREPROCESSING_HOOKS": ["jobs.api.settings.only_jobadmin_endpoints"],
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files (pinned with the package),
    # never a CDN: the docs work with no internet and within the pages' CSP (script-src 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


api_settings = APISettings(user_settings=API, defaults=DEFAULTS, import_strings=IMPORT_STRINGS)  # type: ignore[arg-type]


class JobAdminAPI:
    """The API settings of every JobAdmin view (first among its bases, so its attributes win)."""

    settings = api_settings
    authentication_classes: Any = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    permission_classes: Any = api_settings.DEFAULT_PERMISSION_CLASSES
    parser_classes: Any = api_settings.DEFAULT_PARSER_CLASSES
    renderer_classes: Any = api_settings.DEFAULT_RENDERER_CLASSES
    throttle_classes: Any = api_settings.DEFAULT_THROTTLE_CLASSES
    filter_backends: Any = api_settings.DEFAULT_FILTER_BACKENDS
    content_negotiation_class: Any = api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS
    metadata_class: Any = api_settings.DEFAULT_METADATA_CLASS
    versioning_class: Any = None
    schema: Any = AutoSchema()


def only_jobadmin_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular preprocessing hook: the operations of JobAdmin's views, none of the host's."""
    return [endpoint for endpoint in endpoints if _is_ours(endpoint[3])]


def _is_ours(callback: Any) -> bool:
    view = getattr(callback, "cls", None)
    return isinstance(view, type) and issubclass(view, JobAdminAPI)


def generate_schema(request: Any = None) -> dict[str, Any]:
    """The OpenAPI document exactly as ``api/schema/`` serves it (JobAdmin's drf-spectacular settings)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.settings import patched_settings

    with patched_settings(SPECTACULAR):
        return dict(SchemaGenerator().get_schema(request=request, public=True))
