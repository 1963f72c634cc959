"""What django-q2 workers call. Like a view, a task only loads and hands over to services.

A queued job does not own a broker task: ``run_next(queue)`` is a wake-up that claims the
best runnable job of the queue, so priorities and concurrency limits are decided at
claim time and a re-delivered wake-up can never run a job twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback as tb
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection

from jobs import outage, services, shutdown, worker_reports
from jobs.context import JobContext
from jobs.exceptions import JobCancelled, JobLost, JobSuspended, JobTimedOut
from jobs.models import Job

logger = logging.getLogger(__name__)


def run_next(queue: str) -> str | None:
    """A wake-up: claim and run jobs of ``queue`` until none is runnable.

    Looping saves a broker round trip per job. The worker takes a next job only while it
    is within ``JOBADMIN_WAKEUP_BUDGET`` seconds of the wake-up, and only one whose
    time-out fits in what is left of django-q2's own time-out for this task
    (``Budget``): otherwise it hands the queue to a fresh wake-up at the back of the
    broker, so other queues get their turn and django-q2 never kills a job that is within
    its own time-out. Returns the id of the first job run, or None if there was nothing.
    """
    worker = services.worker_name()
    # A wake-up whose database work fails says so in health at once (jobs.worker_reports).
    with worker_reports.database_watched(worker=worker):
        services.wakeup_received(queue)
    budget = Budget()
    first: str | None = None
    shutdown.task_started()
    try:
        with worker_reports.database_watched(worker=worker):
            job = _claim(queue, worker, budget, first=True)
        while job is not None:
            first = first or str(job.pk)
            job = execute_job(job, worker=worker, claim_next=queue, budget=budget)
    finally:
        shutdown.task_ended()
    # Stopped claiming with work left (budget spent, a job too long for what is left, or
    # this process stops): a fresh wake-up takes over.
    services.wakeup_if_waiting(queue)
    if shutdown.requested():
        raise SystemExit(0)  # this process stops (jobs.shutdown)
    return first


class Budget:
    """This wake-up's time: its claiming window and what is left of django-q2's time-out."""

    # Seconds kept back from django-q2's time-out for the claim and finish around a job.
    MARGIN = 1.0

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.claim_until = self.started + settings.JOBADMIN_WAKEUP_BUDGET

    def max_timeout(self) -> float | None:
        """The longest job time-out this task can still run; None once its claiming window closed."""
        now = time.monotonic()
        if now >= self.claim_until:
            return None
        # After the job, its outcome may wait out a database outage (jobs.outage).
        return settings.Q_CLUSTER["timeout"] - (now - self.started) - self.MARGIN - outage.give_up_after()


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Raise ``JobTimedOut`` in the job after ``seconds`` even if it never reaches a checkpoint.

    Only in the main thread (where django-q2 runs tasks); the checkpoints enforce the
    same deadline everywhere. django-q2's own alarm is put back afterwards. An alarm that
    rings while the job's thread waits for the database is raised as soon as that query
    returns: raised inside it, it would leave the driver's connection mid-query, and the
    transaction's clean-up fail on it ("can't change 'autocommit' now") in place of the
    time-out. ``JOBADMIN_DB_QUERY_TIMEOUT`` bounds that wait.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = {"querying": 0, "rang": False}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["querying"]:
            state["rang"] = True
            return
        raise JobTimedOut(f"Timed out after {seconds} s.")

    def around_query(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        state["querying"] += 1
        try:
            result = execute(sql, params, many, context)
        finally:
            state["querying"] -= 1
        if state["rang"] and not state["querying"]:
            raise JobTimedOut(f"Timed out after {seconds} s.")
        return result

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_left = signal.alarm(seconds)
    started = time.monotonic()
    try:
        with connection.execute_wrapper(around_query):
            yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_left:
            signal.alarm(max(1, previous_left - int(time.monotonic() - started)))


def execute_job(job: Job, *, worker: str, claim_next: str | None = None, budget: Budget | None = None) -> Job | None:
    """Run a claimed job to one of its ends; never raises for the job's own errors.

    With ``claim_next``, the worker's next job of that queue is claimed (in the same
    transaction as the finish when the job completes) and returned.
    """
    jtype = services.type_or_none(job.type)  # a django.tasks task is loaded by its path
    if jtype is None:
        services.job_fail(
            job_id=job.pk,
            worker=worker,
            attempt=job.attempts,
            retry=False,
            error=f"Unknown job type {job.type!r}: it is not registered in this worker.",
        )
        return _claim(claim_next, worker, budget)
    ctx = JobContext(job, worker=worker)
    ctx.start_heartbeat()
    shutdown.job_started(ctx)
    ids: dict[str, Any] = {"job_id": job.pk, "worker": worker, "attempt": job.attempts}
    # Every outcome is written through a database outage: ``write_through_outage`` first
    # writes the reports the job kept while the database was out, then the outcome, and
    # retries both until the database answers or the outage outlasts the grace.
    outcome = ctx.write_through_outage
    try:
        try:
            with _alarm(job.timeout):
                result = jtype.func(ctx, job.params)
            finish = {**ids, "values": ctx.values(), "result": result, "result_file": ctx.result_file, "job": job}
            max_timeout = budget.max_timeout() if budget is not None else None
            if claim_next is None or shutdown.requested() or (budget is not None and max_timeout is None):
                outcome(lambda: services.job_complete(**finish))
                return None
            return outcome(lambda: services.job_complete_and_claim(queue=claim_next, max_timeout=max_timeout, **finish))
        except JobSuspended:
            # Paused, or this worker stops: the job gives its worker and slot back and a
            # later run continues it from the checkpoint written here.
            outcome(lambda: services.job_suspend(**ids, values=ctx.values()))
        except JobCancelled:
            outcome(lambda: services.job_mark_cancelled(**ids, values=ctx.values()))
        except JobTimedOut as exc:
            error = str(exc) or f"Timed out after {job.timeout} s."
            trace = tb.format_exc()
            outcome(lambda: services.job_fail(**ids, values=ctx.values(), error=error, traceback=trace))
        except Exception as exc:
            if outage.is_outage(exc) and not outage.database_reachable():
                # The job's own queries met a database outage, which is not the job's fault:
                # it stops here and, once the database answers, is queued again to continue
                # from its checkpoint (same attempt), as after a worker's stop.
                logger.warning("job %s met a database outage (%s); it continues once the database is back", job.pk, exc)
                outcome(lambda: services.job_suspend(**ids, values=ctx.values()))
            else:
                error = f"{type(exc).__name__}: {exc}"
                trace = tb.format_exc()
                outcome(lambda: services.job_fail(**ids, values=ctx.values(), error=error, traceback=trace))
    except JobLost as exc:
        # Taken from this worker (stalled), or the database was out for longer than the
        # grace: the outcome is discarded and the stall sweep settles the job.
        logger.warning("job %s: %s; worker %s discards its outcome", job.pk, exc, worker)
        return None
    except Exception:
        logger.exception("could not record the outcome of job %s", job.pk)
        return None
    finally:
        shutdown.job_ended()
        ctx.stop_heartbeat()
    return _claim(claim_next, worker, budget)


def _claim(queue: str | None, worker: str, budget: Budget | None = None, *, first: bool = False) -> Job | None:
    """The next job of ``queue`` for this worker, if it fits the budget; none while the process stops."""
    if queue is None or shutdown.requested():
        return None
    if budget is None or first:
        # A wake-up's first job has the whole of django-q2's time-out, which the settings
        # keep above JOBADMIN_MAX_JOB_TIMEOUT: it always fits.
        return services.job_claim(queue=queue, worker=worker)
    max_timeout = budget.max_timeout()
    if max_timeout is None:
        return None
    return services.job_claim(queue=queue, worker=worker, max_timeout=max_timeout)
