"""The monitor, analytics and index pages of the staff admin (test client)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import EventKind, Job, JobEvent, JobStatus, Queue
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Any, superuser: Any) -> Any:
    services.queue_ensure_defaults()
    client.force_login(superuser)
    return client


def make_job(**fields: Any) -> Job:
    return JobFactory.create(**{"user": None, "steps": ["Prepare", "Process"], **fields})


@pytest.mark.parametrize("name", ["admin:jobadmin-monitor", "admin:jobadmin-monitor-state", "admin:jobadmin-analytics"])
def test_staff_pages_refuse_non_staff(client: Any, user: Any, name: str) -> None:
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    client.force_login(user)
    assert client.get(reverse(name)).status_code == 302


def test_monitor_renders_active_jobs_queues_feed_and_stalled_banner(staff_client: Any, settings: Any) -> None:
    now = timezone.now()
    running = make_job(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, progress=30, queue="default")
    queued = make_job(queue="default")
    long_ago = now - timedelta(seconds=settings.JOBADMIN_STALL_THRESHOLD + 30)
    stalled = make_job(status=JobStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago, queue="high")
    failed = make_job(status=JobStatus.FAILED, finished_at=now, error="bad input")
    make_job(status=JobStatus.COMPLETED, finished_at=now - timedelta(days=400))
    event = JobEvent.objects.create(kind=EventKind.CREATED, job=queued, payload={})

    response = staff_client.get(reverse("admin:jobadmin-monitor"))
    assert response.status_code == 200
    initial = {job["id"] for job in response.context["jobs_initial"]}
    assert initial == {str(running.pk), str(queued.pk), str(stalled.pk)}
    assert [job["id"] for job in response.context["feed_initial"]][0] == str(failed.pk)
    assert response.context["latest_event_id"] == event.pk
    body = response.content.decode()
    assert 'id="ja-jobs-initial"' in body
    assert "1 job looks stalled" in body
    assert "Clean up stalled" in body
    assert "data-live-indicator" in body
    assert '<label><input type="checkbox" id="ja-opt-notify"' in body
    queues = {q["name"]: q for q in response.context["state"]["queues"]}
    assert queues["default"] == {
        "name": "default",
        "queued": 1,
        "running": 1,
        "capacity": 5,
        "utilisation": 20,
        "paused": False,
    }
    assert queues["high"]["running"] == 1


def test_monitor_state_json(staff_client: Any) -> None:
    make_job(queue="batch")
    body = json.loads(staff_client.get(reverse("admin:jobadmin-monitor-state")).content)
    assert body["queued"] == 1
    assert body["stalled"] == 0
    assert {q["name"]: q["queued"] for q in body["queues"]}["batch"] == 1


def test_monitor_queue_pause_and_resume(staff_client: Any, superuser: Any) -> None:
    response = staff_client.post(reverse("admin:jobadmin-queue-pause", args=["high"]))
    assert response.status_code == 302
    assert Queue.objects.get(name="high").paused
    assert JobEvent.objects.get(kind=EventKind.QUEUE_PAUSED).actor == superuser
    again = staff_client.post(reverse("admin:jobadmin-queue-pause", args=["high"]), follow=True)
    assert any("already paused" in str(m) for m in get_messages(again.wsgi_request))
    staff_client.post(reverse("admin:jobadmin-queue-resume", args=["high"]))
    assert not Queue.objects.get(name="high").paused
    missing = staff_client.post(reverse("admin:jobadmin-queue-pause", args=["nowhere"]), follow=True)
    assert any("Unknown queue" in str(m) for m in get_messages(missing.wsgi_request))
    assert staff_client.get(reverse("admin:jobadmin-queue-pause", args=["high"])).status_code == 405


def test_monitor_queue_actions_need_permission(client: Any) -> None:
    services.queue_ensure_defaults()
    staff: Any = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.post(reverse("admin:jobadmin-queue-pause", args=["high"])).status_code == 403
    assert not Queue.objects.get(name="high").paused


def test_cleanup_stalled_from_the_monitor_returns_to_it(staff_client: Any) -> None:
    response = staff_client.post(reverse("admin:jobs_job_cleanup_stalled"), {"next": reverse("admin:jobadmin-monitor")})
    assert response["Location"] == reverse("admin:jobadmin-monitor")
    unsafe = staff_client.post(reverse("admin:jobs_job_cleanup_stalled"), {"next": "https://evil.example/"})
    assert unsafe["Location"] == reverse("admin:jobs_job_changelist")


@pytest.mark.parametrize(("asked", "selected"), [("7d", "7d"), ("all", "all"), ("bogus", "1d"), (None, "1d")])
def test_analytics_page_range_picker_and_charts(staff_client: Any, asked: str | None, selected: str) -> None:
    response = staff_client.get(reverse("admin:jobadmin-analytics"), {"range": asked} if asked else {})
    assert response.status_code == 200
    assert response.context["selected_range"] == selected
    body = response.content.decode()
    assert f'href="?range={selected}" aria-current="true"' in body
    for key, _title in response.context["charts"]:
        assert f'data-chart="{key}"' in body
    assert "vendor/chartjs/chart.umd.min.js" in body


def test_admin_index_shows_counts_health_and_links(staff_client: Any) -> None:
    now = timezone.now()
    make_job(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now)
    make_job()
    make_job(status=JobStatus.FAILED, finished_at=now)
    response = staff_client.get(reverse("admin:index"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<strong>1</strong> active" in body
    assert "<strong>1</strong> queued" in body
    assert "<strong>1</strong> failed today" in body
    assert "<strong>3</strong> created today" in body
    assert 'data-health-url="/api/health/"' in body
    assert reverse("admin:jobadmin-monitor") in body
    assert reverse("admin:jobadmin-analytics") in body
