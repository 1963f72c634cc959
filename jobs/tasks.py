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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from jobs import services
from jobs.context import JobContext
from jobs.exceptions import JobCancelled, JobLost, JobSuspended, JobTimedOut
from jobs.models import Job
from jobs.registry import get_job_type

logger = logging.getLogger(__name__)


def run_next(queue: str) -> str | None:
    """A wake-up: claim and run jobs of ``queue`` until none is runnable.

    Looping saves a broker round trip per job; after ``JOBADMIN_WAKEUP_BUDGET`` seconds
    the worker hands what is left to a fresh wake-up at the back of the broker, so other
    queues get their turn and the task stays far below django-q2's timeout. Returns the id
    of the first job run, or None if there was nothing to run.
    """
    services.wakeup_received(queue)
    worker = services.worker_name()
    deadline = time.monotonic() + settings.JOBADMIN_WAKEUP_BUDGET
    first: str | None = None
    job = services.job_claim(queue=queue, worker=worker)
    while job is not None:
        first = first or str(job.pk)
        if time.monotonic() >= deadline:
            execute_job(job, worker=worker)
            services.wakeup_if_waiting(queue)
            return first
        job = execute_job(job, worker=worker, claim_next=queue)
    return first


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Raise ``JobTimedOut`` in the job after ``seconds`` even if it never reaches a checkpoint.

    Only in the main thread (where django-q2 runs tasks); the checkpoints enforce the
    same deadline everywhere. django-q2's own alarm is put back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise JobTimedOut(f"Timed out after {seconds} s.")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_left = signal.alarm(seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_left:
            signal.alarm(max(1, previous_left - int(time.monotonic() - started)))


def execute_job(job: Job, *, worker: str, claim_next: str | None = None) -> Job | None:
    """Run a claimed job to one of its ends; never raises for the job's own errors.

    With ``claim_next``, the worker's next job of that queue is claimed (in the same
    transaction as the finish when the job completes) and returned.
    """
    try:
        jtype = get_job_type(job.type)
    except LookupError:
        services.job_fail(
            job_id=job.pk,
            worker=worker,
            attempt=job.attempts,
            retry=False,
            error=f"Unknown job type {job.type!r}: it is not registered in this worker.",
        )
        return _claim(claim_next, worker)
    ctx = JobContext(job, worker=worker)
    ctx.start_heartbeat()
    ids: dict[str, Any] = {"job_id": job.pk, "worker": worker, "attempt": job.attempts}
    try:
        try:
            with _alarm(job.timeout):
                result = jtype.func(ctx, job.params)
            ctx.flush_pending()
            finish = {**ids, "values": ctx.values(), "result": result, "result_file": ctx.result_file, "job": job}
            if claim_next is None:
                services.job_complete(**finish)
                return None
            return services.job_complete_and_claim(queue=claim_next, **finish)
        except JobSuspended:
            # Paused at a checkpoint: the job gives its worker and slot back and a later
            # run continues it from the checkpoint written here.
            ctx.flush_pending()
            services.job_suspend(**ids, values=ctx.values())
        except JobCancelled:
            services.job_mark_cancelled(**ids, values=ctx.values())
        except JobTimedOut as exc:
            services.job_fail(
                **ids,
                values=ctx.values(),
                error=str(exc) or f"Timed out after {job.timeout} s.",
                traceback=tb.format_exc(),
            )
        except JobLost:
            logger.warning("job %s was taken from worker %s; its outcome is discarded", job.pk, worker)
        except Exception as exc:
            services.job_fail(
                **ids, values=ctx.values(), error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc()
            )
    except Exception:
        # Recording the outcome failed (the database went away?): the job keeps its stale
        # heartbeat and the stall clean-up settles it.
        logger.exception("could not record the outcome of job %s", job.pk)
        return None
    finally:
        ctx.stop_heartbeat()
    return _claim(claim_next, worker)


def _claim(queue: str | None, worker: str) -> Job | None:
    return services.job_claim(queue=queue, worker=worker) if queue is not None else None


def enqueue_scheduled(job_type: str, **params: Any) -> str:
    """Target of django-q2 schedules: queue a job of ``job_type`` as the system."""
    return str(services.job_enqueue(job_type=job_type, params=params).pk)
