"""A job runs in-process from enqueue to completion (the engine's happy path)."""

import pytest

from jobs import services
from jobs.models import EventKind, JobStatus
from jobs.tasks import run_next


@pytest.mark.django_db(transaction=True)
def test_demo_job_runs_to_completion_when_a_worker_claims_it(user):
    job = services.job_enqueue(job_type="demo", params={"items": 5, "delay_ms": 0}, user=user)
    assert job.status == JobStatus.QUEUED

    assert run_next("default") == str(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.processed_items, job.total_items, job.progress) == (5, 5, 100)
    assert job.result.data == {"items": 5}
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[0] == EventKind.CREATED
    assert kinds[1] == EventKind.STARTED
    assert kinds[-1] == EventKind.COMPLETED
