"""Schedules with real processes: the monitor fires a due schedule, a qcluster runs its job; a
monitor killed (SIGKILL) and started again queues no due time twice."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobStatus, Schedule
from tests.conftest import child_env, grant, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_the_monitor_fires_a_due_schedule_once_and_a_worker_runs_its_job(processes: Any, user: Any) -> None:
    owner = grant(user, "jobs.change_schedule")
    schedule = services.schedule_create(
        values={"name": "every minute", "type": "demo", "params": {"items": 2, "delay_ms": 0}, "interval_minutes": 1},
        user=owner,
    )
    # Due now (as after downtime): the monitor queues it at its next look, once.
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(hours=3))
    processes.qcluster()
    monitor = processes.start("manage.py", "monitor", env=child_env(JOBADMIN_SCHEDULE_INTERVAL="0.5"), name="monitor")

    wait_for(lambda: Job.objects.filter(schedule=schedule, status=JobStatus.COMPLETED).exists(), timeout=40)
    job = Job.objects.get(schedule=schedule)
    assert job.user_id == owner.pk

    # Killed without a chance to clean up, and started again: the due time it fired is gone.
    processes.stop(monitor, sig=signal.SIGKILL)
    processes.start("manage.py", "monitor", env=child_env(JOBADMIN_SCHEDULE_INTERVAL="0.5"), name="monitor")
    schedule.refresh_from_db()
    # The next due time is the interval's next boundary after the fire, not one of the three
    # hours' missed ones; it may come within seconds (an every-minute schedule fired at :57).
    assert schedule.next_run_at is not None
    assert job.created_at < schedule.next_run_at <= job.created_at + timedelta(minutes=1)
    wait_for(lambda: Schedule.objects.filter(pk=schedule.pk, last_run_at__isnull=False).exists(), timeout=5)
    time.sleep(3)  # several of the new monitor's looks
    # Nothing more before that due time (at it, the new monitor rightly fires the next run).
    assert Job.objects.filter(schedule=schedule, created_at__lt=schedule.next_run_at).count() == 1
