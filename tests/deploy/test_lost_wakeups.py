"""Queued jobs do not wait for the monitor after Redis restarts empty (issue 14, item 6).

The wake-ups counted in flight were lost with Redis; the count stayed at the queue's limit,
so no later enqueue sent one, and without a monitor (its dispatch tick resets the count)
the jobs stayed queued.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Processes, wait_for
from tests.deploy.conftest import OwnRedis

LOST_AFTER = "1"


@pytest.mark.django_db(transaction=True)
def test_jobs_enqueued_around_an_empty_redis_restart_complete_without_a_monitor(
    broker_on_own_redis: OwnRedis, processes: Processes, settings: Any
) -> None:
    from jobs import services
    from jobs.models import Job, JobStatus, Queue

    # The broker of this process and of the cluster is this test's Redis; no monitor runs.
    own_redis = broker_on_own_redis
    settings.JOBADMIN_WAKEUP_LOST_AFTER = float(LOST_AFTER)
    Queue.objects.filter(name="high").update(concurrency=1)

    # A wake-up goes to Redis and is counted in flight: the queue is at its limit.
    first = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, queue="high")
    assert Queue.objects.get(name="high").pending_wakeups == 1

    # Redis restarts empty: the wake-up is gone, the count still believes it in flight.
    own_redis.stop()
    own_redis.start()
    processes.qcluster(REDIS_URL=own_redis.url, JOBADMIN_WAKEUP_LOST_AFTER=LOST_AFTER)

    second = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, queue="high")

    wait_for(
        lambda: (
            set(Job.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True))
            == {JobStatus.COMPLETED}
        ),
        timeout=10,
        message="queued jobs waited for a monitor",
    )
