"""The monitoring API's output serializers name every field its builders produce, and no other.

The views answer through these serializers, which would silently drop a field that a
builder grew without its serializer. So each builder's raw output is checked against
the serializer's strict JSON Schema (every object closed): a new field fails here until
it is declared, and so reaches the OpenAPI document and the generated client.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonschema
import pytest
from django.utils import timezone

from jobs.api.json_schema import serializer_json_schema
from jobs.models import JobStatus
from monitoring import analytics, health, serializers
from monitoring.metrics import metrics_sample, metrics_series
from monitoring.stats import resolve_window, stats_summary
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def _check(body: Any, serializer: type) -> None:
    jsonschema.validate(body, serializer_json_schema(serializer, "response"))


@pytest.fixture
def history() -> None:
    """Jobs in every status, two failures with errors, a user, and two metric samples."""
    now = timezone.now()
    user = UserFactory.create()
    for status in JobStatus.values:
        started = now - timedelta(minutes=30) if status != JobStatus.QUEUED else None
        finished = now - timedelta(minutes=5) if status in (JobStatus.COMPLETED, JobStatus.FAILED) else None
        JobFactory.create(
            status=status,
            user=user,
            created_at=now - timedelta(hours=1),
            started_at=started,
            finished_at=finished,
            duration=1500.0 if finished else None,
            queue_wait=1800.0 if started else None,
            error="boom" if status == JobStatus.FAILED else "",
        )
    metrics_sample(now=now - timedelta(minutes=2))
    metrics_sample(now=now - timedelta(minutes=1))


def test_stats_body_has_exactly_the_serializers_fields(history: None) -> None:
    _check(stats_summary(range_name="1d"), serializers.StatsSerializer)


def test_analytics_bodies_have_exactly_the_serializers_fields(history: None) -> None:
    window = resolve_window(range_name="1d")
    framed = {"window": window.as_dict()}
    _check({**framed, "results": analytics.analytics_types(window=window)}, serializers.AnalyticsTypesSerializer)
    _check({**framed, "results": analytics.analytics_users(window=window)}, serializers.AnalyticsUsersSerializer)
    _check({**framed, **analytics.analytics_errors(window=window)}, serializers.AnalyticsErrorsSerializer)
    _check(
        {**framed, "time_zone": "UTC", "results": analytics.analytics_peak_hours(window=window)},
        serializers.AnalyticsPeakHoursSerializer,
    )
    for metric in analytics.TREND_METRICS:
        points = analytics.analytics_trends(window=window, metric=metric, interval="1h")
        assert points
        body = {**framed, "metric": metric, "interval": "1h", "points": points}
        _check(body, serializers.AnalyticsTrendsSerializer)


def test_metrics_series_has_exactly_the_serializers_fields(history: None) -> None:
    window = resolve_window(range_name="1h")
    assert window.start is not None
    points = metrics_series(interval="1m", start=window.start, end=window.end)
    assert points
    _check({"window": window.as_dict(), "interval": "1m", "points": points}, serializers.MetricsSeriesSerializer)


def test_health_report_has_exactly_the_serializers_fields(history: None) -> None:
    report = health.health_report()
    assert set(report["checks"]) == set(health.CHECKS)
    _check(report, serializers.HealthSerializer)
    _check({"status": report["status"], "checked_at": report["checked_at"]}, serializers.HealthSerializer)


def test_a_field_the_serializer_does_not_name_fails_the_check(history: None) -> None:
    report = health.health_report()
    report["checks"]["monitor"]["lease_age"] = 1.0
    with pytest.raises(jsonschema.ValidationError):
        _check(report, serializers.HealthSerializer)
