"""Actions by people (API, admin): cancel, pause, resume and retry a job.

Each one locks the job, asks ``jobs.models.TRANSITIONS`` whether the action is allowed
from the job's state, applies it and records its event in one transaction, or raises
``TransitionNotAllowed`` having changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs import counters
from jobs.events import record_job_event
from jobs.exceptions import TransitionNotAllowed
from jobs.models import EventKind, Job, JobResult, JobStatus, Transition
from jobs.services._shared import FINISH_FIELDS, actor_pk, finish, locked, save_fields, type_or_none
from jobs.services.batch_finish import batch_member_finished, batch_member_requeued
from jobs.services.queues import request_wakeups


def job_cancel(*, job: Job, actor: Any = None) -> Job:
    """Queued or paused: cancelled at once. Running: cancelled at its next checkpoint."""
    now = timezone.now()
    with transaction.atomic():
        job = locked(job)
        step = job.transition("cancel")
        if step.to == JobStatus.CANCELLED:
            # Queued or paused: neither holds a worker nor a slot (a paused job was suspended).
            job.status = step.to
            job.cancel_requested = False
            job.pause_requested = False
            job.eta = None
            finish(job, now)
            save_fields(job, now, ["status", "cancel_requested", "pause_requested", "eta", *FINISH_FIELDS])
            record_job_event(job=job, kind=EventKind.CANCELLED, actor_id=actor_pk(actor))
            counters.counter_add(name=counters.CANCELLED, label=job.type, duration=job.duration)
            if job.batch_id is not None:
                batch_member_finished(job.batch_id)
        else:  # running: the worker cancels it at its next checkpoint
            _flag(job, step, now, actor, flag="cancel_requested", value=True, kind=EventKind.CANCEL_REQUESTED)
    return job


def job_pause(*, job: Job, actor: Any = None) -> Job:
    """Ask a running job to pause: at its next checkpoint it is suspended (``job_suspend``).

    Refused for a type that cannot continue from a checkpoint (``resumable=False``).
    """
    now = timezone.now()
    with transaction.atomic():
        job = locked(job)
        _flag(
            job, job.transition("pause"), now, actor, flag="pause_requested", value=True, kind=EventKind.PAUSE_REQUESTED
        )
    return job


def job_resume(*, job: Job, actor: Any = None) -> Job:
    """A paused job is queued again and continues from its checkpoint; a pause that has not
    taken effect yet is withdrawn. It keeps its priority and its age, so it takes its old
    place among the queued jobs."""
    now = timezone.now()
    with transaction.atomic():
        job = locked(job)
        step = job.transition("resume")
        _flag(job, step, now, actor, flag="pause_requested", value=False, kind=EventKind.RESUMED)
        if step.to == JobStatus.QUEUED:
            request_wakeups(job.queue)
    return job


def _flag(job: Job, step: Transition, now: datetime, actor: Any, *, flag: str, value: bool, kind: str) -> None:
    """Inside the action's transaction: the job takes ``step``'s status and sets a request flag.

    The flags are how people's actions reach a running job's worker: it reads them at
    each checkpoint (``job_heartbeat``) and pauses or unwinds there.
    """
    job.status = step.to
    setattr(job, flag, value)
    save_fields(job, now, ["status", flag])
    record_job_event(job=job, kind=kind, actor_id=actor_pk(actor))


def job_retry(*, job: Job, actor: Any = None) -> Job:
    """Queue a new attempt of a failed or cancelled job; the old error stays in its events.

    A retry by hand grants the type's full attempt budget again.
    """
    now = timezone.now()
    with transaction.atomic():
        job = locked(job)
        step = job.transition("retry")
        jtype = type_or_none(job.type)
        if jtype is None:
            raise TransitionNotAllowed(
                action="retry", status=job.status, message=f"Job type {job.type!r} is no longer registered."
            )
        previous_error = job.error
        job.status = step.to
        job.max_attempts = job.attempts + jtype.max_attempts
        job.run_after = None
        job.finished_at = None
        job.duration = None
        job.error = ""
        job.traceback = ""
        job.cancel_requested = job.pause_requested = False
        job.worker = ""
        # A retry by hand starts over; automatic retries and requeues continue.
        job.checkpoint = None
        save_fields(
            job,
            now,
            [
                "checkpoint",
                "status",
                "max_attempts",
                "run_after",
                "finished_at",
                "duration",
                "error",
                "traceback",
                "cancel_requested",
                "pause_requested",
                "worker",
            ],
        )
        JobResult.objects.filter(job=job).delete()
        record_job_event(
            job=job, kind=EventKind.RETRIED, actor_id=actor_pk(actor), extra={"previous_error": previous_error}
        )
        counters.counter_add(name=counters.RETRIED, label=job.type)
        if job.batch_id is not None:
            batch_member_requeued(job.batch_id)
        request_wakeups(job.queue)
    return job


# Each action of ``jobs.models.TRANSITIONS`` and the one service that applies it.
JOB_ACTIONS: dict[str, Callable[..., Job]] = {
    "cancel": job_cancel,
    "retry": job_retry,
    "pause": job_pause,
    "resume": job_resume,
}
