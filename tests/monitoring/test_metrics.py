"""Metric sampling, the /api/metrics/ time series, retention, and worker liveness across processes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.retention import purgers
from monitoring.metrics import metrics_sample, metrics_series
from monitoring.models import MetricSample
from tests.monitoring.conftest import NOW, ago, make_job
from tests.monitoring.test_alerts import sample

pytestmark = pytest.mark.django_db


def test_a_sample_measures_the_system_and_the_job_tables() -> None:
    now = timezone.now()
    Job.objects.bulk_create(
        [Job(type="demo", queue="batch"), Job(type="demo", queue="batch"), Job(type="demo", queue="high")]
    )
    make_job(status="running", created=now - timedelta(minutes=1), started=now - timedelta(seconds=30))
    make_job(
        status="failed",
        created=now - timedelta(minutes=2),
        started=now - timedelta(minutes=2),
        finished=now - timedelta(seconds=20),
    )
    make_job(
        status="completed",
        created=now - timedelta(minutes=2),
        started=now - timedelta(minutes=2),
        finished=now - timedelta(seconds=10),
    )
    make_job(
        status="completed",
        created=now - timedelta(minutes=9),
        started=now - timedelta(minutes=9),
        finished=now - timedelta(minutes=3),
    )

    s = metrics_sample(now=now)

    assert 0 <= s.cpu_percent <= 100
    assert 0 < s.memory_percent <= 100
    assert 0 < s.disk_percent <= 100
    assert s.load_1 >= 0
    assert s.queue_depth == {"batch": 2, "default": 0, "high": 1}
    assert s.queued_jobs == 3
    assert s.running_jobs == 1
    assert s.jobs_per_minute == 2
    assert s.failure_rate == pytest.approx(100 / 3, abs=0.01)
    assert s.live_workers == 0


def test_series_averages_samples_per_interval_bucket(api_client: Any, staff_user: Any) -> None:
    sample(NOW.replace(minute=0, second=10), cpu_percent=10, event_lag_ms=5)
    sample(NOW.replace(minute=0, second=40), cpu_percent=30, event_lag_ms=50)
    sample(NOW.replace(minute=2, second=0), cpu_percent=70)

    points = metrics_series(interval="1m", start=NOW.replace(minute=0, second=0), end=NOW)

    assert [p["time"][11:16] for p in points] == ["12:00", "12:02"]
    assert points[0]["cpu_percent"] == 20.0
    assert points[0]["samples"] == 2
    assert points[0]["event_lag_ms"] == 50.0  # the worst lag of the bucket
    assert points[1]["event_lag_ms"] is None

    api_client.force_authenticate(staff_user)
    response = api_client.get(
        "/api/metrics/", {"interval": "5m", "from": ago(minutes=40).isoformat(), "to": NOW.isoformat()}
    )
    assert response.status_code == 200
    assert [p["samples"] for p in response.json()["points"]] == [3]


def test_metrics_api_is_staff_only(api_client: Any, user: Any) -> None:
    api_client.force_authenticate(user)
    assert api_client.get("/api/metrics/").status_code == 403


def test_retention_purges_samples_older_than_ninety_days_in_batches() -> None:
    now = timezone.now()
    for days in (91, 92, 93, 89):
        sample(now - timedelta(days=days))

    purge = purgers()["metrics"]

    assert purge(2) == 2
    assert purge(2) == 1
    assert purge(2) == 0
    assert MetricSample.objects.count() == 1
