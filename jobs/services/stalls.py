"""The stall sweep: jobs whose worker stopped sending heartbeats are failed or requeued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs.models import EventKind, Job
from jobs.selectors import stalled_jobs_queryset
from jobs.services._shared import type_or_none
from jobs.services.queues import slot_freed_without_worker
from jobs.services.reports import job_fail


@dataclass(frozen=True)
class StalledOutcome:
    job_id: str
    status: str
    reason: str


def jobs_cleanup_stalled(*, actor: Any = None, now: datetime | None = None) -> list[StalledOutcome]:
    """Settle every job whose worker stopped sending heartbeats, so none stays running.

    A job past its time-out fails as timed out (retried if attempts remain). Otherwise
    the type's stall policy decides: ``fail`` fails it for good (it may have had side
    effects), ``requeue`` queues another attempt if attempts remain.
    """
    now = now or timezone.now()
    outcomes = []
    # No ordering: Job's default (-created_at) makes SQLite walk the whole created_at index
    # instead of the status index, every monitor tick.
    for job in stalled_jobs_queryset(now).order_by().only("id", "type", "started_at", "timeout", "worker"):
        jtype = type_or_none(job.type)
        timed_out = job.started_at is not None and (now - job.started_at).total_seconds() > job.timeout
        if timed_out:
            reason = f"Timed out after {job.timeout} s (worker {job.worker or '?'} stopped responding)."
            retry = True
        else:
            reason = f"Stalled: worker {job.worker or '?'} stopped sending heartbeats."
            retry = jtype is not None and jtype.stall_policy == "requeue"
        done = job_fail(
            job_id=job.pk, worker=None, attempt=None, error=reason, retry=retry, kind=EventKind.STALLED, actor=actor
        )
        if done is not None:
            outcomes.append(StalledOutcome(job_id=str(done.pk), status=done.status, reason=reason))
    return outcomes


def job_abandon(*, job_id: Any, worker: str, attempt: int) -> Job | None:
    """This worker stops and the job reached no checkpoint within ``JOBADMIN_SHUTDOWN_GRACE``:
    its type's ``stall_policy`` decides, as after a stall: ``requeue`` queues another
    attempt (from its last checkpoint), ``fail`` fails it. The freed slot wakes a worker."""
    row = Job.objects.filter(pk=job_id).only("type", "queue").first()
    if row is None:
        return None
    jtype = type_or_none(row.type)
    job = job_fail(
        job_id=job_id,
        worker=worker,
        attempt=attempt,
        error=f"The worker stopped and the job reached no checkpoint within {settings.JOBADMIN_SHUTDOWN_GRACE:g} s.",
        retry=jtype is not None and jtype.stall_policy == "requeue",
        kind=EventKind.STALLED,
    )
    if job is not None:
        slot_freed_without_worker(job.queue, timezone.now())
    return job
