"""A cluster that starts settles the running jobs of this host's workers that are gone — and only
those (``services.jobs_recover_dead_workers``; the real-process test is test_runall_death.py)."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.utils import timezone

from jobs import services
from jobs.models import EventKind, Job, JobStatus, QueueSlot

pytestmark = pytest.mark.django_db

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def claimed(job_type: str, worker: str, heartbeat_ago: timedelta = timedelta(0)) -> Job:
    services.job_enqueue(job_type=job_type, params={} if job_type != "demo" else {"items": 1, "delay_ms": 0})
    job = services.job_claim(queue="default", worker=worker)
    assert job is not None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - heartbeat_ago)
    return job


def test_only_the_jobs_of_this_hosts_gone_workers_are_settled_by_their_stall_policy(test_job_types: Any) -> None:
    born = psutil.Process().create_time()
    gone = claimed("test-resumable", f"{HOST}:{dead_pid()}")
    fails = claimed("demo", f"{HOST}:{dead_pid()}")
    # This process: alive, and born before the job's heartbeat.
    alive = claimed("test-resumable", f"{HOST}:{os.getpid()}")
    # The same pid, but born after the job's last heartbeat: the pid was used again.
    age = timezone.now().timestamp() - born + 60
    reused = claimed("test-resumable", f"{HOST}:{os.getpid()}", heartbeat_ago=timedelta(seconds=age))
    elsewhere = claimed("test-resumable", f"another-{HOST}:{dead_pid()}")  # default's 5th and last slot

    outcomes = services.jobs_recover_dead_workers()

    assert {o.job_id for o in outcomes} == {str(gone.pk), str(fails.pk), str(reused.pk)}
    status = dict(Job.objects.values_list("pk", "status"))
    assert status[gone.pk] == status[reused.pk] == JobStatus.QUEUED  # requeue: continues from its cursor
    assert status[fails.pk] == JobStatus.FAILED  # demo's policy is fail
    assert status[alive.pk] == status[elsewhere.pk] == JobStatus.RUNNING
    held = set(QueueSlot.objects.filter(job__isnull=False).values_list("job_id", flat=True))
    assert held == {alive.pk, elsewhere.pk}, "the settled jobs' slots are free"
    stalled = Job.objects.get(pk=gone.pk).events.filter(kind=EventKind.STALLED).get()
    assert "is gone: found when a cluster started" in stalled.payload["error"]
    assert services.jobs_recover_dead_workers() == [], "nothing twice"
