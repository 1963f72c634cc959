"""GET /metrics: Prometheus text, with access limited by token or client address."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache

from monitoring.alerts import alerts_evaluate
from monitoring.metrics import WS_CONNECTIONS_CACHE_KEY
from monitoring.models import AlertRule
from tests.monitoring.conftest import NOW, ago, make_job

pytestmark = pytest.mark.django_db


def _history() -> None:
    for seconds in (0.05, 2, 45, 45):
        make_job(
            status="completed",
            created=ago(minutes=2),
            started=ago(minutes=1),
            finished=ago(minutes=1) + timedelta(seconds=seconds),
        )
    make_job(status="failed", created=ago(minutes=2), started=ago(minutes=1), finished=ago(minutes=1))
    make_job(status="queued", created=ago(minutes=1), queue="batch")


def test_exposition_has_jobs_histograms_queues_connections_and_alerts(client: Any) -> None:
    _history()
    cache.set(WS_CONNECTIONS_CACHE_KEY, 7)
    for i in range(3):
        make_job(status="failed", created=NOW, started=NOW, finished=NOW + timedelta(seconds=i))
    alerts_evaluate(now=NOW + timedelta(seconds=5), rules=[AlertRule.objects.get(name="failure-burst")])

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = set(response.content.decode().splitlines())
    assert 'jobadmin_jobs{type="demo",status="completed"} 4' in lines
    assert 'jobadmin_jobs{type="demo",status="failed"} 4' in lines
    assert 'jobadmin_jobs{type="demo",status="queued"} 1' in lines
    assert 'jobadmin_job_duration_seconds_bucket{type="demo",le="0.1"} 3' in lines  # 0.05 s and two 0 s failures
    assert 'jobadmin_job_duration_seconds_bucket{type="demo",le="5.0"} 6' in lines
    assert 'jobadmin_job_duration_seconds_bucket{type="demo",le="60.0"} 8' in lines
    assert 'jobadmin_job_duration_seconds_bucket{type="demo",le="+Inf"} 8' in lines
    assert 'jobadmin_job_duration_seconds_count{type="demo"} 8' in lines
    assert 'jobadmin_job_duration_seconds_sum{type="demo"} 95.05' in lines
    assert 'jobadmin_queue_depth{queue="batch"} 1' in lines
    assert "jobadmin_websocket_connections 7" in lines
    assert 'jobadmin_alerts_open{severity="critical",status="open"} 1' in lines
    assert 'jobadmin_alerts_total{rule="failure-burst"} 1' in lines
    assert "# TYPE jobadmin_job_duration_seconds histogram" in lines


def test_access_needs_an_allowed_address_or_the_token(client: Any, settings: Any) -> None:
    settings.PROMETHEUS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.PROMETHEUS_TOKEN = "s3cret"

    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_no_token_configured_means_no_token_accepted(client: Any, settings: Any) -> None:
    settings.PROMETHEUS_ALLOWED_IPS = []
    settings.PROMETHEUS_TOKEN = ""

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 403
