"""An enqueue whose wake-up cannot be sent (the broker is away) still succeeds: the job is
committed (issue 14, item 5). A 500 for a committed job made users retry into duplicates."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import OwnRedis


@pytest.mark.django_db(transaction=True)
def test_an_admin_enqueue_whose_wakeup_cannot_be_sent_succeeds_and_counts_no_wakeup_in_flight(
    broker_on_own_redis: OwnRedis, client: Any, superuser: Any
) -> None:
    from django.urls import reverse

    from jobs.models import Job, Queue

    # The broker is this test's Redis, and it is away when the job commits.
    broker_on_own_redis.stop()
    client.force_login(superuser)

    response = client.post(
        reverse("admin:jobs_job_enqueue_type", args=["demo"]),
        {"items": "3", "delay_ms": "0", "fail_at": "", "_queue": "default", "_priority": "0"},
    )

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert job.status == "queued"
    # No wake-up is believed in flight, so the next enqueue or the dispatch tick sends one.
    assert Queue.objects.get(name="default").pending_wakeups == 0
