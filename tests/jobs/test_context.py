"""The job context in-process: coalesced writes, checkpoints, logs and the time-out checkpoint.

Each test claims a job with ``services.job_claim`` and drives a ``JobContext`` directly, as
the worker runner does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jobs import services
from jobs.context import JobContext
from jobs.exceptions import JobCancelled, JobLost
from jobs.models import EventKind, Job, JobEvent, JobStatus
from jobs.tasks import run_next
from tests.conftest import wait_for

WORKER = "test-host:1"


def claimed_demo(**params: Any) -> Job:
    services.job_enqueue(job_type="demo", params={"items": 10, "delay_ms": 0, **params})
    job = services.job_claim(queue="default", worker=WORKER)
    assert job is not None
    return job


def progress_rows(job: Job) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, kind=EventKind.PROGRESS).order_by("id"))


@pytest.fixture
def heartbeating() -> Iterator[list[JobContext]]:
    """Contexts whose heartbeat thread runs; stopped when the test ends."""
    started: list[JobContext] = []
    yield started
    for ctx in started:
        ctx.stop_heartbeat()


def with_heartbeat(started: list[JobContext], job: Job) -> JobContext:
    ctx = JobContext(job, worker=WORKER)
    ctx.start_heartbeat()
    started.append(ctx)
    return ctx


@pytest.mark.django_db
def test_a_tight_loop_of_progress_calls_writes_a_handful_of_rows_and_the_last_report_of_each_step():
    job = claimed_demo()
    ctx = JobContext(job, worker=WORKER)
    ctx.step("Process")
    interval = ctx._interval

    started = time.monotonic()
    for i in range(1, 100_001):
        ctx.progress(processed=i, total=100_000)
    elapsed = time.monotonic() - started

    in_loop = len(progress_rows(job))
    assert in_loop <= elapsed / interval + 2, f"{in_loop} progress rows in {elapsed:.2f} s"
    assert elapsed < 2, f"100,000 progress calls took {elapsed:.2f} s"

    # A step change first writes the step's last report, however recent the previous write.
    ctx.step("Summarise")
    rows = progress_rows(job)
    assert len(rows) == in_loop + 1
    assert rows[-1].payload["job"]["processed_items"] == 100_000
    assert rows[-1].payload["job"]["step_name"] == "Process"
    step_events = JobEvent.objects.filter(job=job, kind=EventKind.STEP).order_by("id")
    assert [e.payload["step_name"] for e in step_events] == ["Process", "Summarise"]

    assert services.job_complete(job_id=job.pk, worker=WORKER, attempt=job.attempts, values=ctx.values())
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.processed_items, job.total_items, job.progress) == (100_000, 100_000, 100)


@pytest.mark.django_db
def test_progress_reports_eta_from_the_observed_rate():
    job = claimed_demo()
    ctx = JobContext(job, worker=WORKER)
    ctx.step("Process")
    ctx.progress(processed=0, total=100)
    time.sleep(0.05)
    ctx.progress(processed=10)

    eta = ctx.values()["eta"]
    assert eta is not None
    # 10 items in ≥ 50 ms: the other 90 need at least 0.45 s more (less what this line took).
    assert (eta - timezone.now()).total_seconds() >= 0.3


@pytest.mark.django_db
def test_log_lines_are_buffered_and_written_with_the_next_report():
    job = claimed_demo()
    ctx = JobContext(job, worker=WORKER)
    for n in range(3):
        ctx.log(f"line {n}")
    assert not JobEvent.objects.filter(job=job, kind=EventKind.LOG).exists()

    ctx.step("Process")
    logs = list(JobEvent.objects.filter(job=job, kind=EventKind.LOG))
    assert len(logs) == 1
    assert [line["message"] for line in logs[0].payload["lines"]] == ["line 0", "line 1", "line 2"]


@pytest.mark.django_db
def test_a_report_after_the_job_was_taken_from_this_worker_raises_job_lost():
    job = claimed_demo()
    ctx = JobContext(job, worker=WORKER)
    # The stall clean-up settles the job while this worker still runs it.
    services.job_fail(job_id=job.pk, worker=None, attempt=None, error="Stalled.", retry=False)

    with pytest.raises(JobLost):
        ctx.step("Process")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.current_step == 0, "the lost worker's report was not written"


@pytest.mark.django_db(transaction=True)
def test_a_requested_cancel_raises_at_the_next_progress_call(heartbeating):
    job = claimed_demo()
    ctx = with_heartbeat(heartbeating, job)
    ctx.progress(processed=1, total=10)  # no request yet: nothing happens

    services.job_cancel(job=job)

    def cancelled_at_checkpoint() -> bool:
        try:
            ctx.progress(processed=2)
        except JobCancelled:
            return True
        return False

    wait_for(cancelled_at_checkpoint, timeout=5, message="the cancel request never reached the job")
    assert services.job_mark_cancelled(job_id=job.pk, worker=WORKER, attempt=job.attempts, values=ctx.values())
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.processed_items == 2


@pytest.mark.django_db(transaction=True)
def test_outside_the_main_thread_the_checkpoints_alone_enforce_the_timeout():
    from tests.jobtypes.jobs import registered

    with registered():
        job = services.job_enqueue(job_type="test-spinner")
        results: list[str | None] = []

        def work() -> None:
            try:
                results.append(run_next("default"))  # no SIGALRM here: not the main thread
            finally:
                connection.close()

        started = time.monotonic()
        runner = threading.Thread(target=work)
        runner.start()
        runner.join(timeout=15)
        elapsed = time.monotonic() - started

    assert results == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "Timed out after 1 s."
    assert "on_alarm" not in job.traceback
    assert "in progress" in job.traceback
    assert elapsed < 3, "the checkpoint let the job run on past its time-out"


def slow_query(seconds: float) -> None:
    """One query that keeps the database busy for ``seconds`` (pg_sleep; a Python function on SQLite)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
        else:
            connection.connection.create_function("jobadmin_sleep", 1, time.sleep)
            cursor.execute("SELECT jobadmin_sleep(%s)", [seconds])


@pytest.mark.django_db(transaction=True)
def test_the_alarm_that_rings_during_a_query_times_the_job_out_when_the_query_returns() -> None:
    # Seen in CI: raised inside the driver's wait, the time-out left the connection mid-query
    # and the transaction's clean-up failed in its place ("can't change 'autocommit' now").
    from django.db import transaction

    from jobs.exceptions import JobTimedOut
    from jobs.tasks import _alarm

    started = time.monotonic()
    with pytest.raises(JobTimedOut, match="Timed out after 1 s"), _alarm(1), transaction.atomic():
        slow_query(1.5)
    assert 1.4 <= time.monotonic() - started < 3  # the query ran to its end, then the job stopped
    with connection.cursor() as cursor:  # and the connection serves the outcome's writes
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
