"""The built-in job types, run in-process through the real runner."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobEvent, JobStatus
from jobs.registry import all_job_types, get_job_type
from jobs.tasks import run_next

# Committed rows: the worker's heartbeat thread reads the job over its own connection.
pytestmark = pytest.mark.django_db(transaction=True)


def run(job_type: str, params: dict, user=None) -> Job:
    job = services.job_enqueue(job_type=job_type, params=params, user=user)
    assert run_next(job.queue) == str(job.pk)
    job.refresh_from_db()
    return job


def test_demo_fails_at_the_requested_item_with_its_progress_so_far():
    job = run("demo", {"items": 10, "delay_ms": 0, "fail_at": 4})

    assert job.status == JobStatus.FAILED
    assert job.error == "RuntimeError: Demo failure at item 4 of 10."
    assert "Traceback" in job.traceback
    assert job.processed_items == 3
    assert job.step_name == "Process"


def test_export_writes_a_csv_of_the_jobs_matching_the_filters(user, other_user):
    mine = services.job_enqueue(job_type="demo", params={"items": 1}, user=user)
    services.job_enqueue(job_type="demo", params={"items": 1}, user=other_user)
    services.job_cancel(job=services.job_enqueue(job_type="demo", params={"items": 1}, user=user))

    job = run("export-jobs", {"status": ["queued"], "user": user.pk})

    assert job.status == JobStatus.COMPLETED, job.error
    assert job.result.data == {"rows": 1}
    rows = list(csv.DictReader(io.StringIO(job.result.file.read().decode())))
    assert [(r["id"], r["status"], r["user"]) for r in rows] == [(str(mine.pk), "queued", user.username)]


def test_export_refuses_bad_filters_before_queueing():
    from rest_framework.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        services.job_enqueue(job_type="export-jobs", params={"status": ["sleeping"]})
    assert "status" in excinfo.value.detail
    assert not Job.objects.exists()


def test_purge_history_deletes_old_finished_jobs_and_events_in_batches_and_keeps_the_rest(settings):
    settings.JOBADMIN_PURGE_BATCH = 2
    long_ago = timezone.now() - timedelta(days=40)
    old = []
    for _ in range(5):
        job = services.job_cancel(job=services.job_enqueue(job_type="demo", params={"items": 1}))
        old.append(job.pk)
    Job.objects.filter(pk__in=old).update(finished_at=long_ago, created_at=long_ago)
    JobEvent.objects.filter(job_id__in=old).update(created_at=long_ago)
    recent = services.job_cancel(job=services.job_enqueue(job_type="demo", params={"items": 1}))
    old_but_queued = services.job_enqueue(job_type="demo", params={"items": 1})
    Job.objects.filter(pk=old_but_queued.pk).update(created_at=long_ago)

    job = run("purge-history", {})

    assert job.status == JobStatus.COMPLETED, job.error
    purged = job.result.data
    assert purged is not None
    assert purged["jobs"] == 5
    assert purged["events"] == 0, "the old jobs' events went with their jobs"
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, old_but_queued.pk, job.pk}


def test_every_builtin_type_publishes_its_params_as_json_schema():
    names = {t.name for t in all_job_types()}
    assert {"demo", "export-jobs", "purge-history"} <= names

    schema: dict = get_job_type("demo").params_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["items"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1_000_000,
        "default": 100,
        "description": "How many items to process.",
    }
    assert schema["properties"]["fail_at"]["type"] == ["integer", "null"]
