"""The built-in job types, run in-process through the real runner."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobs import services
from jobs.api.json_schema import serializer_json_schema
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


def _queued_with_checkpoint(job_type: str, params: dict, checkpoint: dict) -> Job:
    """A job suspended at ``checkpoint`` (as a pause or a worker's stop leaves it), queued again."""
    job = services.job_enqueue(job_type=job_type, params=params)
    Job.objects.filter(pk=job.pk).update(
        checkpoint={**checkpoint, "suspended": True}, started_at=timezone.now(), attempts=1
    )
    return job


def test_a_suspended_export_continues_after_its_last_row_and_writes_the_same_file(settings):
    for i in range(30):
        services.job_enqueue(job_type="demo", params={"items": i + 1})
    until = timezone.now().isoformat()
    whole = run("export-jobs", {"type": "demo"})
    lines = whole.result.file.read().splitlines(keepends=True)
    header_and_ten = b"".join(lines[:11])
    tenth = next(csv.reader([lines[10].decode()]))
    tenth_row = Job.objects.get(pk=tenth[0])

    job = _queued_with_checkpoint(
        "export-jobs",
        {"type": "demo"},
        {
            "step": 0,
            "cursor": {
                "until": until,
                "after": [tenth_row.created_at.isoformat(), str(tenth_row.pk)],
                "rows": 10,
                "bytes": len(header_and_ten),
            },
        },
    )
    Job.objects.filter(pk=job.pk).update(total_items=30, processed_items=10)
    partial = Path(settings.MEDIA_ROOT) / "partial" / f"export-{job.pk}.csv"
    partial.parent.mkdir(parents=True, exist_ok=True)
    # The rows the first run wrote are kept as they are (marked here, to tell a continuation
    # from a fresh start); what it wrote after its last checkpoint is cut off.
    written = header_and_ten.replace(b",queued,", b",QUEUED,")
    assert written.count(b",QUEUED,") == 10
    partial.write_bytes(written + b"half a row written after the last checkpoint")

    assert run_next("batch") == str(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.result.file.read() == written + b"".join(lines[11:])
    assert job.result.data == {"rows": 30}
    assert not partial.exists()


def test_an_export_whose_partial_file_is_lost_starts_over(settings):
    for i in range(5):
        services.job_enqueue(job_type="demo", params={"items": i + 1})
    job = _queued_with_checkpoint(
        "export-jobs",
        {"type": "demo"},
        {
            "step": 0,
            "cursor": {
                "until": timezone.now().isoformat(),
                "after": ["2020-01-01T00:00:00+00:00", str(uuid.uuid4())],
                "rows": 3,
                "bytes": 400,
            },
        },
    )

    assert run_next("batch") == str(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.result.data == {"rows": 5}
    assert len(job.result.file.read().splitlines()) == 6


def test_a_suspended_purge_skips_the_purgers_it_finished(settings):
    long_ago = timezone.now() - timedelta(days=40)
    old = services.job_cancel(job=services.job_enqueue(job_type="demo", params={"items": 1}))
    Job.objects.filter(pk=old.pk).update(finished_at=long_ago, created_at=long_ago)
    job = _queued_with_checkpoint(
        "purge-history", {}, {"step": 0, "cursor": {"done": ["jobs"], "deleted": {"jobs": 7}}}
    )

    assert run_next("batch") == str(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.result.data is not None
    assert job.result.data["jobs"] == 7, "the finished purger ran again"
    assert Job.objects.filter(pk=old.pk).exists()


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

    schema: dict = serializer_json_schema(get_job_type("demo").params)
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


@pytest.mark.parametrize("evil", ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_export_neutralises_cells_a_spreadsheet_would_run_as_a_formula(user, evil):
    from tests.factories import UserFactory

    owner: Any = UserFactory(username="u" + evil.strip("\t\r=+-@")[:8].replace('"', ""))
    job = services.job_enqueue(job_type="demo", params={"items": 1}, user=owner)
    Job.objects.filter(pk=job.pk).update(error=evil)

    export = run("export-jobs", {"user": owner.pk})

    (row,) = list(csv.DictReader(io.StringIO(export.result.file.read().decode())))
    assert row["error"] == "'" + evil
    assert row["user"] == owner.username
