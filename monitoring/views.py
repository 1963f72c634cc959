"""The monitoring API: statistics, analytics, metrics, health, alerts; and ``/metrics``.

Who may call what is ``jobs.policy`` (docs/security.md): everything here shows the whole
system, so it needs ``jobs.view_job`` — alerts ``monitoring.view_alert`` /
``monitoring.change_alert``, alert rules ``monitoring.view_alertrule`` /
``monitoring.change_alertrule`` — except ``/api/health/``, which anyone may call (a load
balancer) but which shows only the verdict to those without ``jobs.view_job``, and
``/metrics``, which is guarded by ``PROMETHEUS_TOKEN`` / ``PROMETHEUS_ALLOWED_IPS`` instead
of a login.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView, ListCreateAPIView, RetrieveUpdateDestroyAPIView
from rest_framework.permissions import SAFE_METHODS, AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import policy
from jobs.api.input import BoundedJSONParser, StrictInputMixin
from jobs.api.pagination import CappedPageNumberPagination
from jobs.api.permissions import (
    CanChangeAlertRules,
    CanChangeAlerts,
    CanSeeAlertRules,
    CanSeeAlerts,
    CanSeeStatistics,
    SignedIn,
)
from jobs.api.schema import ERROR_RESPONSES, errors
from jobs.api.settings import JobAdminAPI
from monitoring import alerts, analytics, health, metrics, prometheus, rules
from monitoring.models import Alert, AlertRule, MetricSample
from monitoring.serializers import (
    AlertQuerySerializer,
    AlertRuleInputSerializer,
    AlertRuleSerializer,
    AlertSerializer,
    AnalyticsErrorsSerializer,
    AnalyticsPeakHoursSerializer,
    AnalyticsTrendsSerializer,
    AnalyticsTypesSerializer,
    AnalyticsUsersSerializer,
    HealthSerializer,
    MetricsQuerySerializer,
    MetricsSeriesSerializer,
    PeakHoursQuerySerializer,
    RangeQuerySerializer,
    StatsSerializer,
    TrendQuerySerializer,
)
from monitoring.stats import BadRange, Window, resolve_window, stats_summary

RANGE_PARAMS = [
    OpenApiParameter("range", str, enum=["1h", "1d", "7d", "30d", "all"]),
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start (inclusive); wins over range."),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="End (exclusive); default now."),
]


def _query(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _window(request: Request, default: str) -> Window:
    data = _query(RangeQuerySerializer, request)
    try:
        return resolve_window(range_name=data.get("range") or default, start=data.get("from"), end=data.get("to"))
    except BadRange as exc:
        raise ValidationError({str(exc).split(":")[0]: [str(exc)]}) from None


class MonitoringAPIView(JobAdminAPI, StrictInputMixin, APIView):
    """Bounded JSON bodies; an unknown query parameter or body field is a 400 (``jobs.api.input``)."""

    parser_classes = [BoundedJSONParser]


class StaffAPIView(MonitoringAPIView):
    permission_classes = [SignedIn, CanSeeStatistics]
    query_serializers = {"get": RangeQuerySerializer}


class StatsView(StaffAPIView):
    @extend_schema(
        parameters=RANGE_PARAMS, responses={200: StatsSerializer, **errors(400, 403)}, summary="Job statistics"
    )
    def get(self, request: Request) -> Response:
        data = _query(RangeQuerySerializer, request)
        try:
            body = stats_summary(range_name=data.get("range") or "1d", start=data.get("from"), end=data.get("to"))
        except BadRange as exc:
            raise ValidationError({str(exc).split(":")[0]: [str(exc)]}) from None
        return Response(StatsSerializer(body).data)


class AnalyticsTypesView(StaffAPIView):
    @extend_schema(
        parameters=RANGE_PARAMS, responses={200: AnalyticsTypesSerializer, **errors(400, 403)}, summary="Per job type"
    )
    def get(self, request: Request) -> Response:
        window = _window(request, "7d")
        body = {"window": window.as_dict(), "results": analytics.analytics_types(window=window)}
        return Response(AnalyticsTypesSerializer(body).data)


class AnalyticsUsersView(StaffAPIView):
    @extend_schema(
        parameters=RANGE_PARAMS, responses={200: AnalyticsUsersSerializer, **errors(400, 403)}, summary="Top 10 users"
    )
    def get(self, request: Request) -> Response:
        window = _window(request, "7d")
        body = {"window": window.as_dict(), "results": analytics.analytics_users(window=window)}
        return Response(AnalyticsUsersSerializer(body).data)


class AnalyticsErrorsView(StaffAPIView):
    @extend_schema(
        parameters=RANGE_PARAMS,
        responses={200: AnalyticsErrorsSerializer, **errors(400, 403)},
        summary="Grouped errors",
    )
    def get(self, request: Request) -> Response:
        window = _window(request, "7d")
        body = {"window": window.as_dict(), **analytics.analytics_errors(window=window)}
        return Response(AnalyticsErrorsSerializer(body).data)


class AnalyticsTrendsView(StaffAPIView):
    query_serializers = {"get": TrendQuerySerializer}

    @extend_schema(
        parameters=[
            *RANGE_PARAMS,
            OpenApiParameter("metric", str, enum=list(analytics.TREND_METRICS)),
            OpenApiParameter("interval", str, enum=list(analytics.TREND_INTERVALS)),
        ],
        responses={200: AnalyticsTrendsSerializer, **errors(400, 403)},
        summary="A metric over time",
    )
    def get(self, request: Request) -> Response:
        data = _query(TrendQuerySerializer, request)
        window = _window(request, "1d")
        try:
            points = analytics.analytics_trends(window=window, metric=data["metric"], interval=data["interval"])
        except BadRange as exc:
            raise ValidationError({str(exc).split(":")[0]: [str(exc)]}) from None
        body = {"window": window.as_dict(), "metric": data["metric"], "interval": data["interval"], "points": points}
        return Response(AnalyticsTrendsSerializer(body).data)


class AnalyticsPeakHoursView(StaffAPIView):
    query_serializers = {"get": PeakHoursQuerySerializer}

    @extend_schema(
        parameters=[
            *RANGE_PARAMS,
            OpenApiParameter("tz", str, description="IANA zone of the hours (the viewer's); default TIME_ZONE."),
        ],
        responses={200: AnalyticsPeakHoursSerializer, **errors(400, 403)},
        summary="Top 5 hours of the day",
    )
    def get(self, request: Request) -> Response:
        window = _window(request, "7d")
        zone = _query(PeakHoursQuerySerializer, request).get("tz") or timezone.get_current_timezone()
        body = {
            "window": window.as_dict(),
            "time_zone": str(zone),
            "results": analytics.analytics_peak_hours(window=window, zone=zone),
        }
        return Response(AnalyticsPeakHoursSerializer(body).data)


class MetricsView(StaffAPIView):
    query_serializers = {"get": MetricsQuerySerializer}

    @extend_schema(
        parameters=[*RANGE_PARAMS, OpenApiParameter("interval", str, enum=list(metrics.INTERVALS))],
        responses={200: MetricsSeriesSerializer, **errors(400, 403)},
        summary="System metric time series",
    )
    def get(self, request: Request) -> Response:
        data = _query(MetricsQuerySerializer, request)
        window = _window(request, "1h")
        if window.start is None:
            sample = MetricSample.objects.order_by("sampled_at").values_list("sampled_at", flat=True).first()
            start = sample or window.end
        else:
            start = window.start
        points = metrics.metrics_series(interval=data["interval"], start=start, end=window.end)
        body = {"window": window.as_dict(), "interval": data["interval"], "points": points}
        return Response(MetricsSeriesSerializer(body).data)


class HealthView(MonitoringAPIView):
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        responses={
            200: HealthSerializer,
            400: ERROR_RESPONSES[400],
            503: OpenApiResponse(HealthSerializer, description="The database is unreachable."),
        },
        summary="Health verdict",
        description="Anyone may ask for the verdict; `reasons` and `checks` are shown to staff only.",
    )
    def get(self, request: Request) -> Response:
        report = health.health_report()
        database = report["checks"]["database"]
        # A full disk is critical but the node still serves reads: a load balancer keeps it.
        code = (
            status.HTTP_503_SERVICE_UNAVAILABLE
            if database["status"] == health.CRITICAL and not database.get("disk_full")
            else status.HTTP_200_OK
        )
        if not policy.may_see_health_details(request.user):
            report = {"status": report["status"], "checked_at": report["checked_at"]}
        return Response(HealthSerializer(report).data, status=code)


class AlertListView(JobAdminAPI, StrictInputMixin, ListAPIView):
    permission_classes = [SignedIn, CanSeeAlerts]
    parser_classes = [BoundedJSONParser]
    query_serializers = {"get": AlertQuerySerializer}
    serializer_class = AlertSerializer
    pagination_class = CappedPageNumberPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, many=True, enum=["open", "acknowledged", "resolved"]),
            OpenApiParameter("severity", str, enum=["info", "warning", "critical"]),
            OpenApiParameter(
                "rule",
                OpenApiTypes.STR,
                allow_blank=False,
                pattern="^[-a-zA-Z0-9_]+$",
                description="A rule's name (a slug).",
            ),
        ],
        responses={200: AlertSerializer(many=True), **errors(400, 403)},
        summary="Alerts, newest first",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        data = _query(AlertQuerySerializer, self.request)
        qs = Alert.objects.select_related("rule", "acknowledged_by", "resolved_by")
        if data.get("status"):
            qs = qs.filter(status__in=data["status"])
        if data.get("severity"):
            qs = qs.filter(severity=data["severity"])
        if data.get("rule"):
            qs = qs.filter(rule__name=data["rule"])
        return qs.order_by("-created_at", "-id")


class AlertActionView(MonitoringAPIView):
    permission_classes = [SignedIn, CanChangeAlerts]
    action_name = ""

    @extend_schema(request=None, responses={200: AlertSerializer, **errors(403, 404, 409)})
    def post(self, request: Request, pk: int) -> Response:
        alert = get_object_or_404(Alert, pk=pk)
        if self.action_name == "acknowledge":
            alert = alerts.alert_acknowledge(alert=alert, actor=request.user)
        else:
            alert = alerts.alert_resolve(alert=alert, actor=request.user)
        return Response(AlertSerializer(alert).data)


class AlertRuleAccess(BasePermission):
    """Read: ``CanSeeAlertRules``; write: ``CanChangeAlertRules`` (their messages name the permission)."""

    message = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        rule: Any = CanSeeAlertRules() if request.method in SAFE_METHODS else CanChangeAlertRules()
        self.message = rule.message
        return bool(rule.has_permission(request, view))


class AlertRuleAPIView(JobAdminAPI, StrictInputMixin, GenericAPIView):
    """Alert rules: reading needs ``monitoring.view_alertrule`` (or change), writing
    ``monitoring.change_alertrule``. A body field the rule does not have is a 400; the writes are
    ``monitoring.rules``' (the model's validation, the webhook fence)."""

    parser_classes = [BoundedJSONParser]
    permission_classes = [SignedIn, AlertRuleAccess]
    queryset = AlertRule.objects.order_by("name")
    serializer_class = AlertRuleSerializer

    def _input(self, *, partial: bool) -> dict[str, Any]:
        serializer = AlertRuleInputSerializer(data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class AlertRuleListView(AlertRuleAPIView, ListCreateAPIView):
    pagination_class = CappedPageNumberPagination
    body_actions = frozenset({"post"})

    @extend_schema(responses={200: AlertRuleSerializer(many=True), **errors(400, 403)}, summary="Alert rules")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=AlertRuleInputSerializer,
        responses={201: AlertRuleSerializer, **errors(400, 403)},
        summary="Add an alert rule",
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = rules.alert_rule_create(fields=self._input(partial=False))
        return Response(AlertRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailView(AlertRuleAPIView, RetrieveUpdateDestroyAPIView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    body_actions = frozenset({"patch"})

    @extend_schema(responses={200: AlertRuleSerializer, **errors(403, 404)}, summary="An alert rule")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=AlertRuleInputSerializer(partial=True),
        responses={200: AlertRuleSerializer, **errors(400, 403, 404)},
        summary="Change an alert rule",
    )
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = rules.alert_rule_update(rule=self.get_object(), changes=self._input(partial=True))
        return Response(AlertRuleSerializer(rule).data)

    @extend_schema(responses={204: None, **errors(403, 404)}, summary="Delete an alert rule and its alerts")
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rules.alert_rule_delete(rule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` (plain Django view: Prometheus wants text, not DRF content negotiation)."""
    if not policy.may_scrape_metrics(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(prometheus.render(), content_type=prometheus.CONTENT_TYPE)
