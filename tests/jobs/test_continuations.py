"""Continuations in-process: a pause suspends the job at a checkpoint (its worker and slot are
free), and a later run continues from the checkpoint: finished steps are skipped, the
current step starts at its cursor, and no item is processed twice.

The worker's side runs in a thread with ``tasks.execute_job``, exactly as a django-q2
worker runs it; the real-process versions are in ``test_processes.py``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jobs import services
from jobs.context import JobContext
from jobs.exceptions import CursorNotSaved, TransitionNotAllowed
from jobs.models import EventKind, Job, JobEvent, JobStatus, QueueSlot
from jobs.tasks import execute_job
from tests.conftest import wait_for

WORKER = "test-host:1"


@pytest.fixture(autouse=True)
def _throwaway_types() -> Iterator[None]:
    from tests.jobtypes.jobs import registered

    with registered():
        yield


def run_in_thread(queue: str, worker: str = WORKER) -> threading.Thread:
    """Claim the next job of ``queue`` and run it to one of its ends, in a thread."""

    def run() -> None:
        try:
            job = services.job_claim(queue=queue, worker=worker)
            assert job is not None
            execute_job(job, worker=worker)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def log_lines(job: Job) -> list[str]:
    return [
        line["message"]
        for event in JobEvent.objects.filter(job=job, kind=EventKind.LOG).order_by("id")
        for line in event.payload["lines"]
    ]


def processed_ranges(job: Job) -> list[tuple[int, int]]:
    """The demo logs the items each run processed: "Processed items 4-9."."""
    found = (re.fullmatch(r"Processed items (\d+)-(\d+)\.", line) for line in log_lines(job))
    return [(int(m[1]), int(m[2])) for m in found if m]


def reported_processed(job: Job) -> list[int]:
    events = JobEvent.objects.filter(job=job, kind__in=[EventKind.PROGRESS, EventKind.STEP]).order_by("id")
    return [e.payload["job"]["processed_items"] for e in events if "job" in e.payload]


def pause_until_suspended(job: Job, runner: threading.Thread) -> Job:
    wait_for(lambda: Job.objects.get(pk=job.pk).processed_items >= 5, timeout=10, message="the job never advanced")
    services.job_pause(job=Job.objects.get(pk=job.pk))
    runner.join(timeout=10)
    assert not runner.is_alive(), "the worker stayed inside the paused job"
    return Job.objects.get(pk=job.pk)


@pytest.mark.django_db(transaction=True)
def test_a_paused_demo_frees_its_worker_and_slot_and_continues_from_its_cursor_processing_each_item_once():
    job = services.job_enqueue(job_type="demo", params={"items": 120, "delay_ms": 5})
    paused = pause_until_suspended(job, run_in_thread("default"))

    assert paused.status == JobStatus.PAUSED
    assert paused.worker == ""
    assert not QueueSlot.objects.filter(job=job).exists()
    assert paused.checkpoint is not None
    stopped_at = paused.checkpoint["cursor"]
    assert paused.checkpoint["step"] == 1
    assert 0 < stopped_at < 120
    assert paused.processed_items == stopped_at

    resumed = services.job_resume(job=paused)
    assert resumed.status == JobStatus.QUEUED
    run_in_thread("default", worker="other-host:2").join(timeout=30)

    done = Job.objects.get(pk=job.pk)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.attempts == 1, "a pause is not a new attempt"
    assert processed_ranges(done) == [(1, stopped_at), (stopped_at + 1, 120)]
    figures = reported_processed(done)
    assert figures == sorted(figures), f"processed_items went back: {figures}"
    assert log_lines(done).count("Processing 120 items, 5 ms each.") == 1, "the finished first step ran again"


@pytest.mark.django_db(transaction=True)
def test_finished_steps_are_not_run_again_and_the_current_step_continues_from_its_cursor():
    job = services.job_enqueue(job_type="test-stepper", params={})
    paused = pause_until_suspended(job, run_in_thread("default"))
    assert paused.checkpoint is not None
    assert paused.checkpoint["step"] == 1

    services.job_resume(job=paused)
    run_in_thread("default").join(timeout=30)

    done = Job.objects.get(pk=job.pk)
    assert done.status == JobStatus.COMPLETED, done.error
    assert log_lines(done) == ["ran First", "ran Second", "ran Third"]
    assert done.processed_items == 40


@pytest.mark.django_db(transaction=True)
def test_a_pause_withdrawn_while_the_job_unwinds_queues_it_to_continue_instead_of_losing_it():
    job = services.job_enqueue(job_type="demo", params={"items": 50, "delay_ms": 1})
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    # The job saw the pause and unwound; the pause was withdrawn before its worker wrote the suspension.
    services.job_pause(job=claimed)
    Job.objects.filter(pk=job.pk).update(pause_requested=False)
    values = {"processed_items": 10, "checkpoint": {"step": 1, "cursor": 10}}
    assert services.job_suspend(job_id=job.pk, worker=WORKER, attempt=1, values=values)

    again = Job.objects.get(pk=job.pk)
    assert again.status == JobStatus.QUEUED
    assert JobEvent.objects.filter(job=job).order_by("-id").first().kind == EventKind.SUSPENDED  # type: ignore[union-attr]


@pytest.mark.django_db
def test_pausing_a_type_that_cannot_continue_is_refused_and_changes_nothing():
    services.job_enqueue(job_type="test-one-shot", params={})
    job = services.job_claim(queue="default", worker=WORKER)
    assert job is not None
    events = JobEvent.objects.filter(job=job).count()

    with pytest.raises(TransitionNotAllowed, match="cannot continue from a checkpoint"):
        services.job_pause(job=job)

    job.refresh_from_db()
    assert (job.status, job.pause_requested) == (JobStatus.RUNNING, False)
    assert JobEvent.objects.filter(job=job).count() == events


@pytest.mark.django_db
def test_a_cursor_that_json_cannot_store_is_refused_and_the_previous_one_stays():
    services.job_enqueue(job_type="demo", params={"items": 10, "delay_ms": 0})
    job = services.job_claim(queue="default", worker=WORKER)
    assert job is not None
    ctx = JobContext(job, worker=WORKER)
    ctx.step("Process")
    ctx.save_cursor({"last_id": 41})

    with pytest.raises(CursorNotSaved, match="must be JSON"):
        ctx.save_cursor({"when": object()})

    assert ctx.cursor == {"last_id": 41}
    assert ctx.values()["checkpoint"] == {"step": 1, "cursor": {"last_id": 41}}


@pytest.mark.django_db
def test_resume_of_a_job_that_is_not_paused_is_refused():
    job = services.job_enqueue(job_type="demo", params={"items": 10, "delay_ms": 0})
    with pytest.raises(TransitionNotAllowed, match="Only a paused job can be resumed"):
        services.job_resume(job=job)
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


@pytest.mark.django_db
def test_a_manual_retry_starts_over_while_the_checkpoint_is_kept_for_automatic_continuation():
    job = services.job_enqueue(job_type="demo", params={"items": 10, "delay_ms": 0})
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    values: dict[str, Any] = {"processed_items": 4, "checkpoint": {"step": 1, "cursor": 4}}
    services.job_fail(job_id=job.pk, worker=WORKER, attempt=1, error="boom", values=values, retry=False)

    retried = services.job_retry(job=Job.objects.get(pk=job.pk))
    assert retried.checkpoint is None
    fresh = services.job_claim(queue="default", worker=WORKER)
    assert fresh is not None
    assert (fresh.attempts, fresh.processed_items, fresh.checkpoint) == (2, 0, None)


@pytest.mark.django_db
def test_a_stalled_job_requeued_by_its_policy_continues_from_its_last_written_checkpoint():
    job = services.job_enqueue(job_type="test-stubborn", params={})  # stall_policy="requeue"
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    checkpoint = {"step": 0, "cursor": {"last": 17}}
    assert services.job_report(
        job_id=job.pk, worker=WORKER, attempt=1, values={"processed_items": 17, "checkpoint": checkpoint}
    )
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))

    [outcome] = services.jobs_cleanup_stalled()
    assert outcome.status == JobStatus.QUEUED
    Job.objects.filter(pk=job.pk).update(run_after=None)  # past its retry back-off

    again = services.job_claim(queue="default", worker="other-host:2")
    assert again is not None
    assert again.pk == job.pk
    assert (again.attempts, again.processed_items, again.checkpoint) == (2, 17, checkpoint)
