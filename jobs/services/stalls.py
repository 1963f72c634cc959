"""The stall sweep: jobs whose worker stopped sending heartbeats are failed or requeued."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
from django.conf import settings
from django.utils import timezone

from jobs.models import EventKind, Job, JobStatus
from jobs.selectors import stalled_jobs_queryset
from jobs.services._shared import type_or_none
from jobs.services.queues import slot_freed_without_worker
from jobs.services.reports import job_fail

logger = logging.getLogger(__name__)

# A process created this long after a job's last heartbeat cannot be the one that wrote it
# (its start time is read from /proc to a clock tick, and the boot time it is added to drifts).
_BORN_AFTER_MARGIN = 1.0


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


def worker_process_gone(worker: str, heartbeat_at: datetime | None, *, host: str) -> bool:
    """Whether ``worker`` (``host:pid``, see ``worker_name``) names a process of ``host`` that no longer
    runs: no such pid, a zombie, or a process born after the job's last heartbeat (the pid was
    used again, as in a restarted container). False when it may be alive, or is another host's."""
    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        born = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to inspect: it may be alive
        return False
    return heartbeat_at is not None and born > heartbeat_at.timestamp() + _BORN_AFTER_MARGIN


def jobs_recover_dead_workers(*, host: str | None = None) -> list[StalledOutcome]:
    """When a cluster starts: settle at once the running jobs whose worker was a process of this
    host that is gone (a run that was killed), instead of waiting for the stall sweep.

    Each follows its type's ``stall_policy``, as after a stall: ``requeue`` queues it again and a
    worker continues it from its cursor; ``fail`` fails it. The conditional write (same worker,
    same attempt) leaves a job alone that someone else settled meanwhile; its slot is freed and
    its queue woken.
    """
    host = host or socket.gethostname()
    outcomes = []
    running = Job.objects.filter(status=JobStatus.RUNNING, worker__startswith=f"{host}:").order_by()
    for job in running.only("id", "type", "worker", "attempts", "heartbeat_at", "queue"):
        if not worker_process_gone(job.worker, job.heartbeat_at, host=host):
            continue
        jtype = type_or_none(job.type)
        reason = f"Its worker {job.worker} is gone: found when a cluster started on {host}."
        done = job_fail(
            job_id=job.pk,
            worker=job.worker,
            attempt=job.attempts,
            error=reason,
            retry=jtype is not None and jtype.stall_policy == "requeue",
            kind=EventKind.STALLED,
        )
        if done is not None:
            slot_freed_without_worker(done.queue, timezone.now())
            outcomes.append(StalledOutcome(job_id=str(done.pk), status=done.status, reason=reason))
    if outcomes:
        logger.warning("settled %d job(s) of workers of this host that are gone", len(outcomes))
    return outcomes
