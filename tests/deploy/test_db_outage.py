"""Workers ride out a database outage (DESIGN.md, "Heartbeats"; issue 14, item 2).

Real ``qcluster`` and ``monitor`` processes on this run's own test database, which the
tests close to everyone but themselves (``tests.deploy.conftest.DatabaseBlock``). Inside
``JOBADMIN_DB_OUTAGE_GRACE`` nothing fails a job for the outage: its reports wait and its
outcome is written when the database answers. Past it, the worker gives the job up and
the stall sweep settles it once the database is back.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from jobs import services
from jobs.models import EventKind, JobStatus
from tests.conftest import Processes, child_env, wait_for
from tests.deploy.conftest import DatabaseBlock
from tests.jobs.test_processes import kinds, processed_ranges, reload, wait_finished, wait_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# Long enough that an outage of a few seconds is inside the grace, on a noisy machine.
RIDE_OUT = {"JOBADMIN_STALL_THRESHOLD": "20", "JOBADMIN_DB_OUTAGE_GRACE": "15"}


def start(processes: Processes, **env: str) -> None:
    processes.qcluster(JOBADMIN_TEST_JOBTYPES="1", **env)
    processes.start("manage.py", "monitor", env=child_env(**env), name="monitor")


def demo(items: int, delay_ms: int) -> Any:
    return services.job_enqueue(job_type="demo", params={"items": items, "delay_ms": delay_ms})


def outage_while_running(block: DatabaseBlock, job: Any, seconds: float) -> Any:
    """Close the database for ``seconds`` once ``job`` is running and 5 items in; its end."""
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)
    block.close()
    time.sleep(seconds)
    block.open()
    return wait_finished(job, timeout=40)


def test_running_jobs_ride_out_an_outage_and_a_job_ending_in_it_records_its_outcome_after(
    processes: Processes, database_block: DatabaseBlock
) -> None:
    start(processes, **RIDE_OUT)
    long = demo(80, 100)  # 8 s: it goes on through the outage and past it
    short = demo(25, 100)  # 2.5 s: it ends inside the outage
    wait_job(long, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)
    wait_job(short, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)

    database_block.close()
    time.sleep(5)
    assert reload(short).status == JobStatus.RUNNING  # nobody could write its end yet
    database_block.open()

    for job in (short, long):
        done = wait_finished(job, timeout=40)
        assert done.status == JobStatus.COMPLETED, done.error
        assert done.attempts == 1
        assert EventKind.FAILED not in kinds(done)
        assert EventKind.STALLED not in kinds(done)
        assert processed_ranges(done) == [(1, done.total_items)]  # one run, every item once
    # The reports kept during the outage were written, in order, when it ended.
    progress = list(long.events.filter(kind=EventKind.PROGRESS).order_by("id").values_list("payload", flat=True))
    processed = [p["job"]["processed_items"] for p in progress]
    assert processed == sorted(processed)


def test_log_lines_written_during_an_outage_are_kept_and_the_job_rides_on(
    processes: Processes, database_block: DatabaseBlock, test_job_types: None
) -> None:
    start(processes, **RIDE_OUT)
    done = outage_while_running(database_block, services.job_enqueue(job_type="test-chatty", params={}), 4)
    assert done.status == JobStatus.COMPLETED, done.error
    assert EventKind.SUSPENDED not in kinds(done)
    lines = [
        line["message"]
        for event in done.events.filter(kind=EventKind.LOG).order_by("id")
        for line in event.payload["lines"]
    ]
    assert lines == [f"item {index} line {line}" for index in range(60) for line in range(5)]


def test_a_job_whose_own_queries_meet_the_outage_continues_from_its_checkpoint(
    processes: Processes, database_block: DatabaseBlock, test_job_types: None
) -> None:
    start(processes, **RIDE_OUT)
    done = outage_while_running(database_block, services.job_enqueue(job_type="test-reader", params={}), 3)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.attempts == 1
    assert EventKind.SUSPENDED in kinds(done)
    assert EventKind.FAILED not in kinds(done)
    ranges = processed_ranges(done)
    assert ranges[0][0] == 1
    assert ranges[-1][1] == 40
    assert all(later[0] == earlier[1] + 1 for earlier, later in zip(ranges, ranges[1:], strict=False)), ranges


def test_past_the_grace_the_worker_gives_the_job_up_and_the_sweep_settles_it(
    processes: Processes, database_block: DatabaseBlock, test_job_types: None
) -> None:
    # give_up_after = min(2, 6 - 2 * 0.5) = 2 s; the outage lasts 8.
    start(processes, JOBADMIN_STALL_THRESHOLD="6", JOBADMIN_DB_OUTAGE_GRACE="2")
    done = outage_while_running(database_block, services.job_enqueue(job_type="test-slow", params={}), 8)
    # test-slow's stall policy is "fail": the sweep failed it as stalled, after the outage.
    assert done.status == JobStatus.FAILED
    assert EventKind.STALLED in kinds(done)
    log = b"".join(processes.log_of(proc) for proc, _ in processes.procs).decode(errors="replace")
    assert "gives the job up" in log


def test_a_new_monitor_waits_two_heartbeats_before_its_first_stall_sweep(db: Any, settings: Any) -> None:
    """A worker that lost the database writes its heartbeat within two heartbeats of it
    answering again: until then the sweep cannot tell it from a dead one."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.duties import DispatchDuty
    from jobs.models import Job

    job = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    old = timezone.now() - timedelta(seconds=settings.JOBADMIN_STALL_THRESHOLD + 5)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, worker="gone:1", heartbeat_at=old, started_at=old)

    duty = DispatchDuty()
    duty(timezone.now())
    assert reload(job).status == JobStatus.RUNNING

    def swept() -> bool:
        duty(timezone.now())
        return reload(job).status != JobStatus.RUNNING

    wait_for(swept, timeout=10)
    assert EventKind.STALLED in kinds(job)


def test_sigterm_during_an_outage_stops_the_worker_within_its_grace_and_the_job_is_settled_after(
    processes: Processes, database_block: DatabaseBlock
) -> None:
    env = {**RIDE_OUT, "JOBADMIN_STALL_THRESHOLD": "8", "JOBADMIN_DB_OUTAGE_GRACE": "5", "JOBADMIN_SHUTDOWN_GRACE": "2"}
    worker = processes.qcluster(**env)
    processes.start("manage.py", "monitor", env=child_env(**env), name="monitor")
    job = demo(200, 100)
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)

    database_block.close()
    time.sleep(1)
    stopping = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)  # the suspension cannot be written: the shutdown grace ends it
    assert time.monotonic() - stopping < 15
    database_block.open()

    # Nothing stays running: the stall sweep settles the job by its policy once the
    # database is back (demo: "fail"), and no worker process is left.
    done = wait_finished(job, timeout=40)
    assert done.status == JobStatus.FAILED
    assert EventKind.STALLED in kinds(done)


def test_requests_that_meet_an_outage_get_a_503_to_retry_and_change_nothing(
    database_block: DatabaseBlock, api_client: Any, client: Any, user: Any, superuser: Any
) -> None:
    from django.db import connection

    from jobs.models import Job
    from tests.conftest import grant

    grant(user, "jobs.view_job", "jobs.change_job")
    api_client.force_authenticate(user)
    client.force_login(superuser)
    database_block.close()
    connection.close()  # this test's own session too: now nobody reaches the database
    try:
        listed = api_client.get("/api/jobs/")
        enqueued = api_client.post("/api/jobs/", {"type": "demo", "params": {"items": 1}}, format="json")
        page = client.get("/admin/jobs/job/")
    finally:
        database_block.open()
    for response in (listed, enqueued):
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
        assert response["Retry-After"] == "5"
    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert Job.objects.count() == 0


def test_an_enqueue_with_a_key_that_met_an_outage_is_sent_again_and_queues_one_job(
    database_block: DatabaseBlock, api_client: Any, user: Any
) -> None:
    # The client's retry after a 503 (and again, as after a lost answer) lands on one job.
    from django.db import connection

    from jobs.models import IdempotencyKey, Job

    api_client.force_authenticate(user)
    body, key = {"type": "demo", "params": {"items": 1}}, {"HTTP_IDEMPOTENCY_KEY": "after-the-outage"}
    database_block.close()
    connection.close()
    try:
        refused = api_client.post("/api/jobs/", body, format="json", **key)
    finally:
        database_block.open()
    assert refused.status_code == 503
    assert not IdempotencyKey.objects.exists()

    first = api_client.post("/api/jobs/", body, format="json", **key)
    again = api_client.post("/api/jobs/", body, format="json", **key)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1
