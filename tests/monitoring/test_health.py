"""GET /api/health/: the verdict, its checks and reasons, and who sees the detail."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jobadmin.singleton import Lease
from jobs.models import Job
from monitoring.health import check_jobs, check_monitor, health_report, monitor_heartbeat
from tests.monitoring.conftest import make_job

pytestmark = pytest.mark.django_db


def _failures(n: int, now: Any) -> None:
    for i in range(n):
        make_job(
            status="failed",
            created=now - timedelta(minutes=4),
            started=now - timedelta(minutes=4),
            finished=now - timedelta(minutes=3, seconds=i),
        )


def test_two_failures_in_five_minutes_are_fine_three_are_critical() -> None:
    now = timezone.now()
    _failures(2, now)
    assert check_jobs(now)["status"] == "healthy"

    _failures(1, now)
    check = check_jobs(now)

    assert check["status"] == "critical"
    assert check["failures"] == 3
    assert "3 jobs failed in the last 5 min" in check["reason"]


def test_failures_older_than_the_window_do_not_count() -> None:
    now = timezone.now()
    _failures(3, now - timedelta(minutes=3))  # finished 6 min ago

    assert check_jobs(now)["status"] == "healthy"


def test_a_job_running_over_thirty_minutes_is_a_warning() -> None:
    now = timezone.now()
    make_job(status="running", created=now - timedelta(minutes=40), started=now - timedelta(minutes=31))

    check = check_jobs(now)

    assert check["status"] == "warning"
    assert check["long_running"] == 1
    assert "running longer than 30 min" in check["reason"]


def test_more_than_ten_active_jobs_is_a_warning_and_the_threshold_is_a_setting(settings: Any) -> None:
    now = timezone.now()
    Job.objects.bulk_create(Job(type="demo", status="running", started_at=now) for _ in range(11))
    assert check_jobs(now)["status"] == "warning"

    settings.HEALTH_ACTIVE_WARNING = 20
    assert check_jobs(now)["status"] == "healthy"


@pytest.fixture
def leading(transactional_db: Any) -> Iterator[Lease]:
    """This process holds the monitor's lease (a short one) while the test runs."""
    lease = Lease(lease=0.5)
    assert lease.acquire(wait=lambda: True)
    yield lease
    lease.release()


def test_monitor_check_follows_its_heartbeat_and_names_the_leader(settings: Any, leading: Lease) -> None:
    now = timezone.now()
    monitor_heartbeat(now - timedelta(seconds=settings.HEALTH_MONITOR_STALE + 5))
    assert check_monitor(now)["status"] == "warning"

    monitor_heartbeat(now)
    check = check_monitor(now)
    assert check["status"] == "healthy"
    assert check["leader"]["pid"] == os.getpid()
    assert check["leader"]["host"] == socket.gethostname()
    assert check["leader"]["lease_age_seconds"] < 5


@pytest.mark.django_db(transaction=True)
def test_no_monitor_holding_the_lease_is_a_warning_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the lock file names the last leader; its heartbeat says whether it lives")
    now = timezone.now()
    monitor_heartbeat(now)

    check = check_monitor(now)

    assert check["status"] == "warning"
    assert check["leader"] is None
    assert "no monitor holds the lease" in check["reason"]


def test_report_is_the_worst_check_with_its_reasons() -> None:
    now = timezone.now()
    monitor_heartbeat(now)
    _failures(3, now)

    report = health_report(now=now)

    assert set(report["checks"]) == {"database", "broker", "channel_layer", "workers", "monitor", "jobs"}
    assert report["checks"]["database"]["status"] == "healthy"
    assert report["checks"]["broker"]["status"] == "healthy"
    assert report["checks"]["channel_layer"]["status"] == "healthy"
    assert report["status"] == "critical"
    assert any(r.startswith("jobs: 3 jobs failed") for r in report["reasons"])


def test_anonymous_callers_get_only_the_verdict_staff_get_the_checks(api_client: Any, staff_user: Any) -> None:
    anonymous = api_client.get("/api/health/")
    api_client.force_authenticate(staff_user)
    staff = api_client.get("/api/health/")

    assert anonymous.status_code == 200
    assert set(anonymous.json()) == {"status", "checked_at"}
    assert anonymous.json()["status"] in ("healthy", "warning", "critical")
    assert staff.status_code == 200
    assert "checks" in staff.json()
    assert "reasons" in staff.json()


def test_the_monitor_check_reports_the_relays_lag_and_warns_when_it_falls_behind(settings: Any, leading: Lease) -> None:
    from django.core.cache import cache

    from monitoring.metrics import EVENT_LAG_CACHE_KEY

    now = timezone.now()
    monitor_heartbeat(now)
    try:
        cache.set(EVENT_LAG_CACHE_KEY, 40.0, 60)
        check = check_monitor(now)
        assert check["status"] == "healthy"
        assert check["relay_lag_ms"] == 40.0

        cache.set(EVENT_LAG_CACHE_KEY, 1000 * settings.HEALTH_RELAY_LAG_WARNING + 1, 60)
        check = check_monitor(now)
        assert check["status"] == "warning"
        assert "relay" in check["reason"]
    finally:
        cache.delete(EVENT_LAG_CACHE_KEY)
