"""Reports from the running job: heartbeats, progress, logs, and how an attempt ends.

Every function here acts only while the calling worker still owns the attempt (same
``worker`` and ``attempts``, job still running or paused); otherwise it changes nothing
and says so, so a worker whose job was cleaned up as stalled cannot overwrite its fate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction
from django.utils import timezone

from jobs import counters, rows
from jobs.events import record_job_event
from jobs.models import ACTIVE_STATUSES, EventKind, Job, JobResult, JobStatus
from jobs.services import claim
from jobs.services._shared import (
    FINISH_FIELDS,
    actor_pk,
    finish,
    json_safe,
    save_fields,
    type_or_none,
)
from jobs.services.batch_finish import batch_member_finished
from jobs.services.queues import release_slot, request_wakeups, slot_freed_without_worker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Control:
    """What the worker must do next, read back at each heartbeat."""

    status: str
    cancel_requested: bool
    pause_requested: bool
    owned: bool


def _owned(job_id: Any, worker: str, attempt: int) -> Any:
    return Job.objects.filter(pk=job_id, worker=worker, attempts=attempt, status__in=ACTIVE_STATUSES)


def _owned_locked(job_id: Any, worker: str, attempt: int, values: dict[str, Any] | None = None) -> Job | None:
    """The job under a row lock if this worker still owns the attempt, with ``values`` applied."""
    try:
        job = _owned(job_id, worker, attempt).select_for_update().get()
    except Job.DoesNotExist:
        return None
    for name, value in (values or {}).items():
        setattr(job, name, value)
    return job


def job_heartbeat(*, job_id: Any, worker: str, attempt: int, write: bool = True) -> Control:
    """Refresh the heartbeat (when ``write``) and read back the control flags."""
    if write:
        _owned(job_id, worker, attempt).update(heartbeat_at=timezone.now())
    row = (
        Job.objects.filter(pk=job_id)
        .values("status", "cancel_requested", "pause_requested", "worker", "attempts")
        .first()
    )
    if row is None:
        return Control(status=JobStatus.CANCELLED, cancel_requested=True, pause_requested=False, owned=False)
    owned = row["worker"] == worker and row["attempts"] == attempt and row["status"] in ACTIVE_STATUSES
    return Control(
        status=row["status"],
        cancel_requested=row["cancel_requested"],
        pause_requested=row["pause_requested"],
        owned=owned,
    )


def job_report(
    *,
    job_id: Any,
    worker: str,
    attempt: int,
    values: dict[str, Any],
    kind: str = EventKind.PROGRESS,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Write a (coalesced) progress or step report; False when the worker lost the job.

    One conditional ``UPDATE … RETURNING`` (plain SQL, see ``jobs.rows``): it only
    matches while this worker owns the attempt, and the event's snapshot is the row as
    written, flags set by people included.
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        job = rows.update_returning(
            Job,
            {**values, "heartbeat_at": now, "updated_at": now},
            pk=job_id,
            worker=worker,
            attempts=attempt,
            status__in=ACTIVE_STATUSES,
        )
        if job is None:
            return False
        record_job_event(job=job, kind=kind, extra=extra)
    return True


def job_log(*, job_id: Any, worker: str, attempt: int, lines: list[dict[str, Any]]) -> None:
    """Append buffered log lines as one event."""
    with transaction.atomic():
        try:
            job = _owned(job_id, worker, attempt).get()
        except Job.DoesNotExist:
            return
        record_job_event(job=job, kind=EventKind.LOG, extra={"lines": lines})


def job_suspend(*, job_id: Any, worker: str, attempt: int, values: dict[str, Any]) -> bool:
    """At a checkpoint the job stopped: its figures and checkpoint are written, and it holds
    neither its worker nor its queue slot any more.

    With a pause requested it is ``paused`` (resuming queues it again; a person's pause
    wins over a worker's stop). Otherwise (its worker stops, see ``jobs.shutdown``; or the
    pause was withdrawn while the job unwound) it is ``queued`` at once, keeping its
    attempt, priority and age, so a worker continues it from the checkpoint. False when
    this worker no longer owns the job.
    """
    now = timezone.now()
    with transaction.atomic():
        job = _owned_locked(job_id, worker, attempt)
        if job is None or job.status != JobStatus.RUNNING:
            return False
        for name, value in values.items():
            setattr(job, name, value)
        paused = job.pause_requested
        job.status = JobStatus.PAUSED if paused else JobStatus.QUEUED
        job.checkpoint = {**(job.checkpoint or {"step": job.current_step, "cursor": None}), "suspended": True}
        job.pause_requested = False
        job.worker = ""
        job.heartbeat_at = None
        job.eta = None
        save_fields(
            job, now, [*values.keys(), "checkpoint", "status", "pause_requested", "worker", "heartbeat_at", "eta"]
        )
        release_slot(job.pk)
        record_job_event(
            job=job, kind=EventKind.PAUSED if paused else EventKind.SUSPENDED, extra={"checkpoint": job.checkpoint}
        )
        if not paused:
            request_wakeups(job.queue)
    return True


def job_complete(
    *,
    job_id: Any,
    worker: str,
    attempt: int,
    values: dict[str, Any],
    result: Any = None,
    result_file: tuple[str, bytes] | None = None,
    job: Job | None = None,
) -> bool:
    """The job function returned: store the result and finish the job.

    ``job`` is the worker's copy from the claim: with it the finish is one conditional
    ``UPDATE`` (it only matches while this worker still owns the job) and no re-read.
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):  # see job_claim
        if job is None:
            job = _owned_locked(job_id, worker, attempt)
            if job is None:
                return False
        changes: dict[str, Any] = {
            **values,
            "status": JobStatus.COMPLETED,
            "progress": 100,
            "eta": None,
            "pause_requested": False,
            "cancel_requested": False,
            "finished_at": now,
            "duration": (now - job.started_at).total_seconds() if job.started_at else None,
            "heartbeat_at": None,
            "updated_at": now,
        }
        if not rows.update(Job, changes, pk=job_id, worker=worker, attempts=attempt, status__in=ACTIVE_STATUSES):
            return False
        release_slot(job_id)
        for name, value in changes.items():
            setattr(job, name, value)
        if result is not None or result_file is not None:
            stored = JobResult(job=job, data=_json_result(result))
            if result_file is not None:
                stored.file.save(result_file[0], ContentFile(result_file[1]), save=False)
            stored.save()
        record_job_event(job=job, kind=EventKind.COMPLETED)
        counters.counter_add(name=counters.COMPLETED, label=job.type, duration=changes["duration"])
        if job.batch_id is not None:
            batch_member_finished(job.batch_id)
    return True


def job_complete_and_claim(*, queue: str, max_timeout: float | None = None, **complete: Any) -> Job | None:
    """``job_complete`` and the worker's next ``job_claim`` in one transaction.

    A draining wake-up (``jobs.tasks.run_next``) finishes a job and takes the next one
    at once: one commit instead of two, and on SQLite one turn of the write lock. Should
    the pair fail in the database, the finish is written again on its own, so a failed
    claim never loses a result (the wake-up then ends, and the dispatch tick wakes the
    queue again). No savepoint: on PostgreSQL it would cost two round trips per job.
    """
    try:
        with transaction.atomic():
            job_complete(**complete)
            return claim.job_claim(queue=queue, worker=complete["worker"], max_timeout=max_timeout)
    except DatabaseError:
        logger.exception("could not finish job %s together with the next claim", complete["job_id"])
    job_complete(**complete)
    return None


def _json_result(result: Any) -> Any:
    if result is None:
        return None
    try:
        return json_safe({"v": result})["v"]
    except (TypeError, ValueError):
        return repr(result)


def job_fail(
    *,
    job_id: Any,
    worker: str | None,
    attempt: int | None,
    error: str,
    traceback: str = "",
    values: dict[str, Any] | None = None,
    retry: bool = True,
    kind: str = EventKind.FAILED,
    actor: Any = None,
) -> Job | None:
    """The attempt failed: queue the next attempt after its back-off, or fail the job.

    ``worker``/``attempt`` of None means the system acts without owning the job (stall
    clean-up); otherwise only the owning worker may fail it.
    """
    now = timezone.now()
    with transaction.atomic():
        qs = Job.objects.filter(pk=job_id, status__in=ACTIVE_STATUSES)
        if worker is not None and attempt is not None:
            qs = qs.filter(worker=worker, attempts=attempt)
        try:
            job = qs.select_for_update().get()
        except Job.DoesNotExist:
            return None
        for name, value in (values or {}).items():
            setattr(job, name, value)
        jtype = type_or_none(job.type)
        job.error = error[:10000]
        job.traceback = traceback
        job.eta = None
        job.pause_requested = job.cancel_requested = False
        extra: dict[str, Any] = {"error": job.error, "attempt": job.attempts}
        if retry and job.attempts < job.max_attempts:
            delay = jtype.backoff_for(job.attempts) if jtype else 0.0
            job.status = JobStatus.QUEUED
            job.run_after = now + timedelta(seconds=delay)
            job.heartbeat_at = None
            job.worker = ""
            extra["retry_at"] = job.run_after.isoformat()
            fields = ["status", "run_after", "heartbeat_at", "worker"]
        else:
            job.status = JobStatus.FAILED
            finish(job, now)
            fields = ["status", *FINISH_FIELDS]
        save_fields(
            job,
            now,
            [*(values or {}).keys(), *fields, "error", "traceback", "eta", "pause_requested", "cancel_requested"],
        )
        release_slot(job.pk)
        record_job_event(job=job, kind=kind, actor_id=actor_pk(actor), extra=extra)
        if job.status == JobStatus.FAILED:
            counters.counter_add(name=counters.FAILED, label=job.type, duration=job.duration)
            if job.batch_id is not None:
                batch_member_finished(job.batch_id)
        else:
            counters.counter_add(name=counters.RETRIED, label=job.type)
        if kind == EventKind.STALLED:
            counters.counter_add(name=counters.STALLED, label=job.type)
        # A failing worker goes on claiming (a due retry included); when the system failed
        # the job, a waiting job needs a wake-up. Back-offs are woken by the dispatch tick.
        if worker is None:
            slot_freed_without_worker(job.queue, now)
    return job


def job_mark_cancelled(*, job_id: Any, worker: str, attempt: int, values: dict[str, Any]) -> bool:
    """At a checkpoint: a requested cancel took effect and the job function unwound."""
    now = timezone.now()
    with transaction.atomic():
        job = _owned_locked(job_id, worker, attempt, values)
        if job is None:
            return False
        job.status = JobStatus.CANCELLED
        job.eta = None
        finish(job, now)
        save_fields(job, now, [*values.keys(), *FINISH_FIELDS, "status", "eta"])
        release_slot(job.pk)
        record_job_event(job=job, kind=EventKind.CANCELLED)
        counters.counter_add(name=counters.CANCELLED, label=job.type, duration=job.duration)
        if job.batch_id is not None:
            batch_member_finished(job.batch_id)
    return True
