"""The engine with real ``qcluster`` processes: control, retries, time-outs, dead workers, limits.

Each test starts its own worker cluster on the test database (and, when configured, the
Redis broker) and drives jobs through ``jobs.services`` as the API would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs import services
from jobs.models import ACTIVE_STATUSES, EventKind, Job, JobStatus
from tests.conftest import child_env, free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def qcluster(processes: Any, **env: str | None) -> Any:
    return processes.qcluster(JOBADMIN_TEST_JOBTYPES="1", **env)


def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def wait_job(job: Job, predicate: Any, *, timeout: float = 15, message: str = "") -> Job:
    def arrived() -> Job | None:
        fresh = reload(job)
        return fresh if predicate(fresh) else None

    return wait_for(
        arrived,
        timeout=timeout,
        message=message or f"job {job.pk} did not get there in {timeout} s",
    )


def wait_finished(job: Job, timeout: float = 15) -> Job:
    return wait_job(job, lambda j: j.status in FINISHED, timeout=timeout, message="job did not finish")


def kinds(job: Job) -> list[str]:
    return list(job.events.order_by("id").values_list("kind", flat=True))


def demo(items: int, delay_ms: int, **kwargs: Any) -> Job:
    return services.job_enqueue(job_type="demo", params={"items": items, "delay_ms": delay_ms}, **kwargs)


def no_lock_errors(processes: Any, proc: Any) -> None:
    log = processes.log_of(proc).decode(errors="replace")
    assert "database is locked" not in log, log[-3000:]


# --- Pause, resume, cancel -------------------------------------------------------------------


def processed_ranges(job: Job) -> list[tuple[int, int]]:
    """The demo logs the items each of its runs processed ("Processed items 4-9.")."""
    lines = [
        line["message"]
        for event in job.events.filter(kind=EventKind.LOG).order_by("id")
        for line in event.payload["lines"]
    ]
    found = (re.fullmatch(r"Processed items (\d+)-(\d+)\.", line) for line in lines)
    return [(int(m[1]), int(m[2])) for m in found if m]


def test_pausing_two_running_jobs_frees_both_workers_and_resume_continues_each_from_its_cursor(processes):
    # Two workers, both busy: pausing their jobs must let a third job run at once.
    proc = qcluster(processes, Q_WORKERS="2")
    first, second = demo(60, 40), demo(60, 40)
    for job in (first, second):
        wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 2, message="job never ran")

    for job in (first, second):
        services.job_pause(job=job)
    paused = [wait_job(job, lambda j: j.status == JobStatus.PAUSED, timeout=5) for job in (first, second)]
    assert all(p.worker == "" for p in paused)

    third = demo(1, 0)
    assert wait_finished(third, timeout=5).status == JobStatus.COMPLETED, "the paused jobs still held the workers"
    time.sleep(0.5)
    assert [reload(job).processed_items for job in (first, second)] == [p.processed_items for p in paused], (
        "a paused job advanced"
    )

    for job in (first, second):
        services.job_resume(job=job)
    for job, before in zip((first, second), paused, strict=True):
        done = wait_finished(job, timeout=20)
        assert done.status == JobStatus.COMPLETED, done.error
        assert done.processed_items == 60
        assert before.checkpoint is not None
        stopped = before.checkpoint["cursor"]
        assert processed_ranges(done) == [(1, stopped), (stopped + 1, 60)], "an item was processed twice or skipped"
        events = kinds(job)
        assert events.index(EventKind.PAUSED) < events.index(EventKind.RESUMED) < events.index(EventKind.COMPLETED)
    no_lock_errors(processes, proc)


def group_is_gone(proc: Any) -> bool:
    """No process of the group the qcluster leads is left (workers and sentinel included)."""
    proc.poll()  # reap the main process, which is this test's child
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("to", ["process group", "main process"])
def test_sigterm_suspends_the_running_job_which_continues_on_another_worker_item_by_item(processes, to):
    first = qcluster(processes, Q_WORKERS="1", JOBADMIN_SHUTDOWN_GRACE="10")
    job = demo(60, 40)
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, message="job never ran")

    # systemd signals the whole group; Kubernetes and `docker stop` only the main process.
    if to == "process group":
        os.killpg(first.pid, signal.SIGTERM)
    else:
        first.send_signal(signal.SIGTERM)
    back = wait_job(job, lambda j: j.status == JobStatus.QUEUED, timeout=10, message="not back in queued in the grace")
    assert back.worker == ""
    assert back.checkpoint is not None
    wait_for(lambda: group_is_gone(first), timeout=10, message="a process of the stopped cluster is still running")
    assert EventKind.SUSPENDED in kinds(job)

    qcluster(processes, Q_WORKERS="1")
    done = wait_finished(job, timeout=20)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.attempts == 1
    stopped = back.checkpoint["cursor"]
    assert processed_ranges(done) == [(1, stopped), (stopped + 1, 60)], "an item was processed twice or skipped"


def test_ctrl_c_of_runall_suspends_the_running_job_and_leaves_no_process_behind(processes):
    import psutil

    runall = processes.start("manage.py", "runall", "--port", str(free_port()), name="runall")
    job = demo(200, 40)
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 3, timeout=30, message="no run")
    family = psutil.Process(runall.pid).children(recursive=True)
    assert len(family) >= 5, family  # daphne, monitor, the cluster's main process, sentinel, workers...

    runall.send_signal(signal.SIGINT)  # Ctrl-C reaches runall's own group only
    assert runall.wait(timeout=30) == 0, processes.log_of(runall).decode(errors="replace")[-3000:]

    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    stopped = reload(job)
    assert stopped.status == JobStatus.QUEUED, "the running job was not suspended"
    assert stopped.checkpoint is not None
    assert 3 <= stopped.checkpoint["cursor"] < 200
    assert b"Stopped." in processes.log_of(runall)


def test_a_job_that_reaches_no_checkpoint_in_the_grace_follows_its_stall_policy_and_the_worker_exits(
    processes, test_job_types
):
    proc = qcluster(processes, Q_WORKERS="1", JOBADMIN_SHUTDOWN_GRACE="1")
    job = services.job_enqueue(job_type="test-stubborn", params={})
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.current_step == 0 and j.heartbeat_at, message="no run")
    time.sleep(0.3)

    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    requeued = wait_job(job, lambda j: j.status == JobStatus.QUEUED, timeout=6, message="not requeued by its policy")
    assert "no checkpoint within 1 s" in requeued.error
    wait_for(lambda: group_is_gone(proc), timeout=6, message="the worker outlived its grace")
    assert time.monotonic() - started < 6


def test_no_job_is_killed_by_django_q2_within_its_own_time_out(processes, test_job_types):
    # django-q2 kills a task after Q_TIMEOUT (+3 s of its own): 6 s here. Each job takes
    # 5 s; three back to back in one wake-up would take 15 s, and a job paused in place
    # for 10 s would have held its task for 15.
    proc = qcluster(processes, Q_WORKERS="1", Q_TIMEOUT="6", JOBADMIN_WAKEUP_BUDGET="60")
    back_to_back = [services.job_enqueue(job_type="test-slow", params={}) for _ in range(3)]
    for job in back_to_back:
        assert wait_finished(job, timeout=25).status == JobStatus.COMPLETED, reload(job).error

    paused = services.job_enqueue(job_type="test-slow", params={})
    wait_job(paused, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 3, message="never ran")
    services.job_pause(job=paused)
    wait_job(paused, lambda j: j.status == JobStatus.PAUSED, timeout=5)
    time.sleep(10)
    services.job_resume(job=reload(paused))
    done = wait_finished(paused, timeout=20)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.processed_items == 50
    assert b"reincarnated worker" not in processes.log_of(proc)


def default_workers() -> int:
    """``Q_CLUSTER["workers"]`` as jobadmin.settings makes it with Q_WORKERS unset."""
    env = child_env(Q_WORKERS=None, DJANGO_SETTINGS_MODULE="jobadmin.settings")
    code = "from jobadmin import settings; print(settings.Q_CLUSTER['workers'])"
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout)


def test_the_default_worker_count_serves_the_summed_queue_limits():
    assert default_workers() == sum(settings.JOBADMIN_QUEUES.values()) == 10


def test_with_the_default_workers_a_high_job_starts_at_once_while_default_is_full_of_long_jobs(processes):
    from monitoring.health import check_workers

    qcluster(processes, Q_WORKERS=str(default_workers()))
    long_jobs = [demo(300, 100) for _ in range(5)]  # default's limit is 5
    for job in long_jobs:
        wait_job(job, lambda j: j.status == JobStatus.RUNNING, timeout=20, message="default did not fill up")

    urgent = demo(1, 0, queue="high")
    started = wait_job(urgent, lambda j: j.started_at is not None, timeout=5, message="the high job never started")
    assert started.started_at is not None
    assert (started.started_at - started.created_at).total_seconds() < 1.0
    wait_for(lambda: check_workers()["status"] == "healthy", timeout=10, message=str(check_workers()))
    assert check_workers()["capacity"] == 10
    for job in long_jobs:
        services.job_cancel(job=reload(job))


def test_health_warns_when_the_workers_cannot_serve_the_summed_limits(processes):
    from monitoring.health import check_workers

    qcluster(processes, Q_WORKERS="2")
    check = wait_for(lambda: (c := check_workers())["workers"] and c, timeout=10, message="no live cluster")
    assert check["status"] == "warning"
    assert "2 live workers cannot serve the queues' summed limit of 10" in check["reason"]


def test_cancel_of_a_running_job_stops_it_at_its_next_checkpoint(processes):
    qcluster(processes)
    job = demo(200, 20)
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 2, message="job never ran")

    services.job_cancel(job=job)
    assert reload(job).status == JobStatus.RUNNING  # cooperative: the worker settles it

    done = wait_job(job, lambda j: j.status == JobStatus.CANCELLED, timeout=5, message="cancel never took effect")
    assert done.processed_items < 200
    assert done.finished_at is not None
    assert done.heartbeat_at is None
    events = kinds(job)
    assert events.index(EventKind.CANCEL_REQUESTED) < events.index(EventKind.CANCELLED)
    assert EventKind.COMPLETED not in events


def test_a_paused_job_frees_its_worker_and_its_cancel_is_immediate(processes):
    qcluster(processes, Q_WORKERS="1")
    job = demo(100, 20)
    wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 1, message="job never ran")
    services.job_pause(job=job)
    wait_job(job, lambda j: j.status == JobStatus.PAUSED, timeout=5, message="pause never took effect")

    # The only worker is free while the job is paused: the next job runs at once.
    follower = demo(1, 0)
    assert wait_finished(follower, timeout=10).status == JobStatus.COMPLETED

    services.job_cancel(job=job)
    assert reload(job).status == JobStatus.CANCELLED
    cancelled = reload(job)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.processed_items < 100
    assert kinds(job).count(EventKind.CANCELLED) == 1


# --- Retries and time-outs ----------------------------------------------------------------------


def test_a_failing_job_is_retried_with_backoff_until_max_attempts(processes, test_job_types):
    qcluster(processes)
    job = services.job_enqueue(job_type="test-flaky")

    # The monitor's dispatch tick is what wakes a queue when a back-off expires.
    last = {"tick": timezone.now()}

    def tick() -> bool:
        now = timezone.now()
        services.dispatch_tick(since=last["tick"], now=now)
        last["tick"] = now
        return reload(job).status == JobStatus.FAILED

    wait_for(tick, timeout=15, interval=0.05, message="the job never failed for good")

    failed = reload(job)
    assert failed.attempts == 3
    assert failed.error == "RuntimeError: attempt 3 failed"
    events = list(job.events.filter(kind__in=[EventKind.STARTED, EventKind.FAILED]).order_by("id"))
    assert [(e.kind, e.payload.get("attempt")) for e in events] == [
        (EventKind.STARTED, 1),
        (EventKind.FAILED, 1),
        (EventKind.STARTED, 2),
        (EventKind.FAILED, 2),
        (EventKind.STARTED, 3),
        (EventKind.FAILED, 3),
    ]
    assert "retry_at" in events[1].payload
    assert "retry_at" in events[3].payload
    assert "retry_at" not in events[5].payload
    # Back-off 0.3 s, then 0.6 s: no attempt starts before its retry time.
    for failed_event, next_start, backoff in ((events[1], events[2], 0.3), (events[3], events[4], 0.6)):
        assert (next_start.created_at - failed_event.created_at).total_seconds() >= backoff


def test_a_job_sleeping_past_its_timeout_is_stopped_by_the_alarm(processes, test_job_types):
    qcluster(processes)
    started = time.monotonic()
    job = services.job_enqueue(job_type="test-sleeper")

    done = wait_finished(job, timeout=10)
    assert done.status == JobStatus.FAILED
    assert done.error == "Timed out after 1 s."
    assert "on_alarm" in done.traceback, "no checkpoint ran: only the SIGALRM handler can have stopped it"
    assert time.monotonic() - started < 8, "the job slept its full 10 s"


def test_a_job_reporting_progress_past_its_timeout_is_stopped(processes, test_job_types):
    # In django-q2's main thread the alarm usually fires first; the checkpoint path alone
    # is tested outside the main thread in test_context.py.
    qcluster(processes)
    job = services.job_enqueue(job_type="test-spinner")

    done = wait_finished(job, timeout=10)
    assert done.status == JobStatus.FAILED
    assert done.error == "Timed out after 1 s."
    assert done.duration is not None
    assert 1 <= done.duration < 5
    assert done.processed_items > 0


# --- Dead workers ---------------------------------------------------------------------------------


def test_a_job_whose_worker_is_killed_is_detected_as_stalled_and_never_left_running(processes):
    proc = qcluster(processes)
    job = demo(500, 20)
    running = wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 1, message="never ran")
    host, pid = running.worker.rsplit(":", 1)
    assert int(pid) != proc.pid, "the job runs in a worker child, not in the cluster's main process"

    os.kill(int(pid), signal.SIGKILL)
    assert services.jobs_cleanup_stalled() == [], "a fresh heartbeat is not a stall"
    time.sleep(1)
    before = reload(job)
    assert before.status == JobStatus.RUNNING
    assert before.processed_items < 500

    # The threshold is 3 s in tests; the last heartbeat is at most 0.5 s older than the kill.
    outcomes = wait_for(services.jobs_cleanup_stalled, timeout=8, interval=0.2, message="never detected as stalled")
    assert [(o.job_id, o.status) for o in outcomes] == [(str(job.pk), JobStatus.FAILED)]
    settled = reload(job)
    assert settled.status == JobStatus.FAILED
    assert "stopped sending heartbeats" in settled.error
    assert pid in settled.error
    assert kinds(job)[-1] == EventKind.STALLED
    assert not Job.objects.filter(status__in=ACTIVE_STATUSES).exists()

    # django-q2 replaced the dead worker: the cluster still runs jobs.
    assert wait_finished(demo(1, 0), timeout=15).status == JobStatus.COMPLETED


# --- Claims and limits ----------------------------------------------------------------------------


def _claim_race(queue: str, contenders: int) -> list[Job | None]:
    barrier = threading.Barrier(contenders)
    results: list[Job | None] = [None] * contenders
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = services.job_claim(queue=queue, worker=f"racer:{i}")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_workers_racing_to_claim_the_same_job_start_it_exactly_once():
    job = demo(1, 0)
    results = _claim_race("default", contenders=6)

    winners = [r for r in results if r is not None]
    assert [w.pk for w in winners] == [job.pk]
    claimed = reload(job)
    assert claimed.status == JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.worker == f"racer:{results.index(winners[0])}"
    assert kinds(job).count(EventKind.STARTED) == 1


def test_racing_claims_never_exceed_the_queue_limit():
    jobs = [demo(1, 0, queue="high") for _ in range(4)]
    results = _claim_race("high", contenders=6)

    winners = [r.pk for r in results if r is not None]
    assert len(winners) == 2 == len(set(winners)), "queue 'high' allows 2 running jobs"
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 2
    assert {j.pk for j in jobs} >= set(winners)


def test_concurrency_limit_holds_across_two_worker_processes(processes):
    first = qcluster(processes)
    second = qcluster(processes)
    jobs = [demo(4, 100, queue="high") for _ in range(6)]

    peak = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = list(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True))
        running = sum(s in ACTIVE_STATUSES for s in statuses)
        assert running <= 2, f"{running} jobs of queue 'high' (limit 2) ran at once"
        peak = max(peak, running)
        if all(s in FINISHED for s in statuses):
            break
        time.sleep(0.02)
    assert peak == 2, "the limit was never reached: the test proved nothing"
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)) == {
        JobStatus.COMPLETED
    }
    workers = {w.split(":")[1] for w in Job.objects.values_list("worker", flat=True)}
    assert len(workers) >= 2
    no_lock_errors(processes, first)
    no_lock_errors(processes, second)


def test_jobs_reporting_progress_continuously_never_hit_database_is_locked(processes):
    # The settings' default worker count (4), all writing progress, heartbeats and events.
    proc = qcluster(processes, Q_WORKERS="4")
    jobs = [demo(400, 1) for _ in range(4)]
    time.sleep(0.3)
    jobs += [demo(400, 1) for _ in range(4)]  # enqueued while the first ones write

    for job in jobs:
        wait_finished(job, timeout=30)
    outcomes = list(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", "error"))
    assert outcomes == [(JobStatus.COMPLETED, "")] * len(jobs)
    assert Job.objects.filter(pk__in=[j.pk for j in jobs], processed_items=400).count() == len(jobs)
    no_lock_errors(processes, proc)


def test_sigterm_with_wake_ups_waiting_stops_the_cluster_within_the_grace(processes):
    # One worker, and more wake-ups than its task queue (workers² = 1) holds: the pusher
    # blocks putting one in, and nothing but the stop can unblock it once the worker exited.
    first = qcluster(processes, Q_WORKERS="1", JOBADMIN_SHUTDOWN_GRACE="5")
    running = demo(200, 40)
    wait_job(running, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 3, message="job never ran")
    waiting = [demo(5, 10) for _ in range(4)]
    time.sleep(1)  # the pusher fetches the wake-ups it can

    first.send_signal(signal.SIGTERM)
    wait_for(lambda: group_is_gone(first), timeout=20, message="the stopped cluster hangs")
    assert reload(running).status == JobStatus.QUEUED
    qcluster(processes, Q_WORKERS="2")
    for job in [running, *waiting]:
        assert wait_finished(job, timeout=30).status == JobStatus.COMPLETED
