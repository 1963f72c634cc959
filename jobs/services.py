"""Everything that writes a job: the one module that owns every status transition.

Each public function checks the current state, applies the change and records its
event in one transaction, or raises ``TransitionNotAllowed`` having changed nothing.
Wake-ups for the workers are sent with ``transaction.on_commit`` so that a worker never
looks for a row that was rolled back.

Transitions (``→`` by a person or the API, ``⇒`` by the worker or the system)::

    queued   → cancelled            queued   ⇒ running   (claim)
    running  → (pause requested)    running  ⇒ paused    (at a checkpoint)
    running  → (cancel requested)   running  ⇒ cancelled (at a checkpoint)
    paused   → running (resume)     running  ⇒ completed | failed | queued (retry)
    paused   → cancelled            running/paused ⇒ failed | queued (stalled, timed out)
    failed/cancelled → queued (retry)
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from jobs import rows
from jobs.events import record_event, record_job_event
from jobs.exceptions import QueueNotFound, TransitionNotAllowed
from jobs.models import ACTIVE_STATUSES, EventKind, Job, JobResult, JobStatus, Queue, QueueSlot
from jobs.registry import get_job_type

logger = logging.getLogger(__name__)

RUN_TASK = "jobs.tasks.run_next"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _actor_id(actor: Any) -> int | None:
    return getattr(actor, "pk", None) if actor is not None and getattr(actor, "is_authenticated", False) else None


def _locked(job: Job | Any) -> Job:
    """Re-read the job under a row lock (a no-op lock on SQLite, where IMMEDIATE serialises)."""
    pk = job.pk if isinstance(job, Job) else job
    return Job.objects.select_for_update().get(pk=pk)


def _save(job: Job, now: datetime, fields: Iterable[str]) -> None:
    job.updated_at = now
    job.save(update_fields=[*fields, "updated_at"])


# --- Queues and wake-ups ----------------------------------------------------------------


def queue_ensure_defaults() -> None:
    """Create the queues named in ``JOBADMIN_QUEUES`` that do not exist yet."""
    for name, concurrency in settings.JOBADMIN_QUEUES.items():
        _, created = Queue.objects.get_or_create(name=name, defaults={"concurrency": concurrency})
        if created:
            queue_add_missing_slots(name)


def _queue(name: str) -> Queue:
    try:
        return Queue.objects.get(name=name)
    except Queue.DoesNotExist:
        if name not in settings.JOBADMIN_QUEUES:
            raise QueueNotFound(name) from None
        queue, created = Queue.objects.get_or_create(
            name=name, defaults={"concurrency": settings.JOBADMIN_QUEUES[name]}
        )
        if created:
            # Now, not in the first claims: those would wait for each other's new rows.
            queue_add_missing_slots(name)
        return queue


def _wakeups_wanted(name: str) -> bool:
    """Whether ``name`` has room for another wake-up in flight; raises ``QueueNotFound``.

    The enqueue path's one read of the queue (plain SQL, see ``jobs.rows``).
    """
    row = rows.fetch_one(
        "SELECT pending_wakeups, concurrency FROM jobs_queue WHERE name = %s",
        [name],
    )
    if row is None:
        queue = _queue(name)
        row = (queue.pending_wakeups, queue.concurrency)
    return bool(row[0] < row[1])


def send_wakeups(queue: str, count: int = 1) -> None:
    """Send ``count`` wake-ups for ``queue`` to the broker now (outside any transaction).

    Callers count them in ``Queue.pending_wakeups`` first (see ``_request_wakeups``).
    """
    from django_q.tasks import async_task

    for _ in range(count):
        async_task(RUN_TASK, queue, save=False, task_name=f"run-next:{queue}")


_COUNT_WAKEUP = "UPDATE jobs_queue SET pending_wakeups = pending_wakeups + 1 WHERE name = %s"


def _request_wakeups(queue: str, count: int = 1, *, force: bool = False) -> int:
    """Inside a transaction: count wake-ups for ``queue`` and send them after the commit.

    A wake-up keeps claiming jobs of its queue until none is left (see
    ``jobs.tasks.run_next``), so no more than ``concurrency`` of them need to be in flight;
    beyond that a request sends nothing. ``force`` sends regardless (the dispatcher's
    safety net, which resets the count when the broker is empty).
    """
    sql = _COUNT_WAKEUP if force else _COUNT_WAKEUP + " AND pending_wakeups < concurrency"
    sent = 0
    with connection.cursor() as cursor:
        for _ in range(count):
            cursor.execute(sql, [queue])
            if not cursor.rowcount:
                break
            sent += 1
    if sent:
        transaction.on_commit(lambda: send_wakeups(queue, sent))
    return sent


def wakeup_received(queue: str) -> None:
    """A wake-up left the broker and a worker took it: it is no longer in flight."""
    Queue.objects.filter(name=queue, pending_wakeups__gt=0).update(pending_wakeups=F("pending_wakeups") - 1)


def wakeup_if_waiting(queue: str) -> int:
    """Hand the queue's remaining runnable jobs to a fresh wake-up (at the back of the broker)."""
    with transaction.atomic():
        if Job.objects.filter(queue=queue, status=JobStatus.QUEUED).filter(_due(timezone.now())).exists():
            return _request_wakeups(queue)
    return 0


def _due(now: datetime) -> Q:
    return Q(run_after__isnull=True) | Q(run_after__lte=now)


def queue_active_count(queue: str) -> int:
    """Running and paused jobs of ``queue``: the slots they hold (see ``QueueSlot``)."""
    row = rows.fetch_one("SELECT COUNT(*) FROM jobs_queueslot WHERE queue = %s AND job_id IS NOT NULL", [queue])
    return int(row[0]) if row else 0


# A free slot of a queue that is not paused, below its concurrency, while no job holds a
# slot above it (after a lowered limit: no claims until those jobs end, so the new limit is
# never exceeded). Plain SQL (jobs.rows): every claim asks.
_FREE_SLOT = (
    "SELECT s.id FROM jobs_queueslot s INNER JOIN jobs_queue q ON q.name = s.queue "
    "WHERE s.queue = %s AND s.job_id IS NULL AND s.number < q.concurrency AND NOT q.paused "
    "AND NOT EXISTS (SELECT 1 FROM jobs_queueslot o WHERE o.queue = s.queue "
    "AND o.number >= q.concurrency AND o.job_id IS NOT NULL) "
    "ORDER BY s.number LIMIT 1"
)


def _take_free_slot(queue: str) -> int | None:
    """Inside the claim's transaction: lock a free slot of ``queue`` and return its id.

    On PostgreSQL the slots other claims hold are skipped, so claims of one queue do not
    wait for each other's commits. When none is free and unlocked: a queue without all
    its slot rows (new, or its limit was raised) gets them; otherwise the claim waits for
    the claims holding free-looking slots to commit, and takes one they did not use.
    """
    # SQLite has no row locks: its transaction holds the database's write lock, so nothing
    # runs beside the claim and there is nothing to skip or to wait for.
    locking = connection.features.has_select_for_update_skip_locked
    skipping = _FREE_SLOT + (" FOR UPDATE OF s SKIP LOCKED" if locking else "")
    row = rows.fetch_one(skipping, [queue])
    if row is None and queue_add_missing_slots(queue):
        row = rows.fetch_one(skipping, [queue])
    if row is None and locking:
        row = rows.fetch_one(_FREE_SLOT + " FOR UPDATE OF s", [queue])
    return row[0] if row else None


def queue_add_missing_slots(queue: str) -> bool:
    """Create the slot rows ``queue``'s concurrency asks for and it lacks; True if it lacked any."""
    row = rows.fetch_one(
        "SELECT q.concurrency, (SELECT COUNT(*) FROM jobs_queueslot s "
        "WHERE s.queue = q.name AND s.number < q.concurrency) FROM jobs_queue q WHERE q.name = %s",
        [queue],
    )
    if row is None or row[1] >= row[0]:
        return False
    QueueSlot.objects.bulk_create(
        [QueueSlot(queue=queue, number=number) for number in range(row[0])], ignore_conflicts=True
    )
    return True


def _release_slot(job_id: Any) -> None:
    """Inside the transaction that ends a job's active state: its slot is free again."""
    rows.update(QueueSlot, {"job": None}, job=job_id)


def release_orphaned_slots() -> int:
    """Free slots held by jobs that are no longer running; returns how many.

    Every transition out of those states frees its slot in its own transaction, so this
    finds nothing unless a job's status was changed behind ``jobs.services`` (by SQL, say).
    The monitor runs it with the dispatch tick. A slot taken or freed meanwhile is never
    a match: both changes commit together with the job's status.
    """
    orphaned = (
        "FROM jobs_queueslot WHERE job_id IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM jobs_job j WHERE j.id = jobs_queueslot.job_id AND j.status = %s)"
    )
    # Read first: on SQLite a write transaction every tick would take the write lock.
    # Only a running job holds a slot: a paused one was suspended and gave its slot back.
    if rows.fetch_one(f"SELECT 1 {orphaned} LIMIT 1", [JobStatus.RUNNING]) is None:
        return 0
    with transaction.atomic():
        return rows.execute(
            f"UPDATE jobs_queueslot SET job_id = NULL WHERE id IN (SELECT id {orphaned})", [JobStatus.RUNNING]
        )


def _slot_freed_without_worker(queue: str, now: datetime) -> None:
    """A slot was freed by the system or a person, not by a worker that goes on claiming."""
    runnable = Job.objects.filter(queue=queue, status=JobStatus.QUEUED).filter(_due(now))
    if runnable.exists():
        _request_wakeups(queue)


def queue_pause(*, name: str, actor: Any = None) -> Queue:
    with transaction.atomic():
        queue = _queue(name)
        queue = Queue.objects.select_for_update().get(pk=queue.pk)
        if queue.paused:
            raise TransitionNotAllowed(action="pause", status="paused", message=f"Queue {name!r} is already paused.")
        queue.paused = True
        queue.save(update_fields=["paused"])
        record_event(kind=EventKind.QUEUE_PAUSED, payload={"queue": name}, actor_id=_actor_id(actor))
    return queue


def queue_resume(*, name: str, actor: Any = None) -> Queue:
    with transaction.atomic():
        queue = _queue(name)
        queue = Queue.objects.select_for_update().get(pk=queue.pk)
        if not queue.paused:
            raise TransitionNotAllowed(action="resume", status="active", message=f"Queue {name!r} is not paused.")
        queue.paused = False
        queue.save(update_fields=["paused"])
        record_event(kind=EventKind.QUEUE_RESUMED, payload={"queue": name}, actor_id=_actor_id(actor))
        now = timezone.now()
        waiting = Job.objects.filter(queue=name, status=JobStatus.QUEUED).filter(_due(now)).count()
        _request_wakeups(name, min(waiting, max(queue.concurrency - queue_active_count(name), 0)))
    return queue


def dispatch_tick(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """The monitor's safety net; returns the number of wake-ups sent.

    Wakes queues whose retry back-off expired since ``since``. And when the broker holds
    no wake-up at all, the in-flight counts are reset and every queue with runnable jobs
    and free slots is woken, so a lost wake-up (a killed worker, a flushed broker) never
    strands a job for longer than one tick. Slots held by jobs that are no longer active
    are freed first (``release_orphaned_slots``).
    """
    from django_q.brokers import get_broker

    now = now or timezone.now()
    orphaned = release_orphaned_slots()
    if orphaned:
        logger.warning("freed %d queue slot(s) held by jobs that were no longer active", orphaned)
    idle_broker = get_broker().queue_size() == 0
    sent = 0
    for queue in Queue.objects.filter(paused=False):
        free = queue.concurrency - queue_active_count(queue.name)
        waiting = Job.objects.filter(queue=queue.name, status=JobStatus.QUEUED)
        with transaction.atomic():
            if idle_broker:
                Queue.objects.filter(pk=queue.pk).update(pending_wakeups=0)
            if free <= 0:
                continue
            wanted = 0
            if since is not None:
                wanted = waiting.filter(run_after__gt=since, run_after__lte=now).count()
            if idle_broker:
                wanted = max(wanted, waiting.filter(_due(now)).count())
            sent += _request_wakeups(queue.name, min(wanted, free), force=True)
    return sent


# --- Enqueue and claim --------------------------------------------------------------------


def job_enqueue(
    *,
    job_type: str,
    params: Any = None,
    user: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    actor: Any = None,
) -> Job:
    """Validate ``params`` against the type's schema, store the job and wake a worker.

    Raises ``UnknownJobType``, ``QueueNotFound`` or DRF's ``ValidationError`` (field
    messages under the params' field names) before anything is written.
    """
    jtype = get_job_type(job_type)
    clean = jtype.validate_params(params)
    queue_name = queue or jtype.queue
    owner = user if user is not None and getattr(user, "is_authenticated", False) else None
    now = timezone.now()
    # Built before BEGIN: on SQLite the transaction holds the database's write lock.
    job = Job(
        type=jtype.name,
        params=_json_safe(clean),
        queue=queue_name,
        priority=jtype.priority if priority is None else priority,
        user=owner,
        steps=list(jtype.steps),
        max_attempts=jtype.max_attempts,
        timeout=jtype.timeout,
        created_at=now,
        updated_at=now,
    )
    with transaction.atomic():
        wake = _wakeups_wanted(queue_name)  # raises QueueNotFound before anything is written
        rows.insert(job)
        record_job_event(job=job, kind=EventKind.CREATED, actor_id=_actor_id(actor or owner))
        if wake:
            _request_wakeups(queue_name)
    return job


def _json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """Validated data may hold dates or decimals; store their JSON form."""
    return json.loads(json.dumps(data, cls=JSONEncoder))


def job_claim(*, queue: str, worker: str, max_timeout: float | None = None) -> Job | None:
    """Atomically take the best runnable job of ``queue`` for ``worker``, or None.

    With ``max_timeout`` (what is left of the worker's django-q2 task budget) the best job
    is taken only if its time-out fits in it; otherwise nothing is taken, and the caller
    hands the queue to a fresh wake-up, so django-q2 never kills a job within its time-out.

    The job takes a free slot of its queue (see ``QueueSlot``), so the concurrency limit
    holds across every worker process, and the conditional update makes a re-delivered
    wake-up harmless: a job is started by exactly one claim.
    """
    now = timezone.now()
    lock = connection.features.has_select_for_update_skip_locked
    # No savepoint when nested (job_complete_and_claim): the claim is all or nothing anyway.
    with transaction.atomic(savepoint=False):
        # Full or paused: the workers holding the slots claim the next jobs themselves when
        # they finish, and resuming the queue sends wake-ups.
        slot = _take_free_slot(queue)
        if slot is None:
            return None
        # Plain SQL (see jobs.rows): these run for every job a worker takes.
        job = rows.select_one(
            Job,
            "WHERE queue = %s AND status = %s AND (run_after IS NULL OR run_after <= %s) "
            "ORDER BY priority DESC, created_at LIMIT 1" + (" FOR UPDATE SKIP LOCKED" if lock else ""),
            [queue, JobStatus.QUEUED, connection.ops.adapt_datetimefield_value(now)],
        )
        if job is None or (max_timeout is not None and job.timeout > max_timeout):
            return None
        # A job with a checkpoint continues (after a pause, a shutdown or a stall): same
        # attempt, its first start and its figures kept. Otherwise a new attempt starts.
        # A suspended job (paused, or its worker shut down) continues its attempt; a job
        # queued again after a failure or a stall continues as its next attempt.
        continuing = job.checkpoint is not None and job.started_at is not None
        suspended = continuing and bool(job.checkpoint.get("suspended"))
        attempt = job.attempts if suspended else job.attempts + 1
        values: dict[str, Any] = {
            "status": JobStatus.RUNNING,
            "heartbeat_at": now,
            "updated_at": now,
            "worker": worker,
            "attempts": attempt,
            "run_after": None,
            "finished_at": None,
            "duration": None,
            "eta": None,
            "cancel_requested": False,
            "pause_requested": False,
        }
        if continuing:
            values["checkpoint"] = {"step": job.checkpoint.get("step", 0), "cursor": job.checkpoint.get("cursor")}
        else:
            values.update(
                {
                    "started_at": now,
                    # Queue wait is the first attempt's: from enqueue to first start.
                    "queue_wait": (now - job.created_at).total_seconds() if attempt == 1 else job.queue_wait,
                    "progress": 0,
                    "current_step": 0,
                    "processed_items": 0,
                    "total_items": None,
                    "error_count": 0,
                    "checkpoint": None,
                }
            )
        # Conditional on the status we read (and on the attempt count, for SQLite, which
        # has no row locks): exactly one claim can win.
        if not rows.update(Job, values, pk=job.pk, status=JobStatus.QUEUED, attempts=job.attempts):
            return None
        rows.update(QueueSlot, {"job": job.pk}, pk=slot)
        for name, value in values.items():
            setattr(job, name, value)
        extra: dict[str, Any] = {"attempt": job.attempts}
        if continuing:
            extra["continued_from"] = job.checkpoint
        record_job_event(job=job, kind=EventKind.STARTED, extra=extra)
    return job


# --- Reports from the running job -----------------------------------------------------------


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
        _save(job, now, [*values.keys(), "checkpoint", "status", "pause_requested", "worker", "heartbeat_at", "eta"])
        _release_slot(job.pk)
        record_job_event(
            job=job, kind=EventKind.PAUSED if paused else EventKind.SUSPENDED, extra={"checkpoint": job.checkpoint}
        )
        if not paused:
            _request_wakeups(job.queue)
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
        _release_slot(job_id)
        for name, value in changes.items():
            setattr(job, name, value)
        if result is not None or result_file is not None:
            stored = JobResult(job=job, data=_json_result(result))
            if result_file is not None:
                stored.file.save(result_file[0], ContentFile(result_file[1]), save=False)
            stored.save()
        record_job_event(job=job, kind=EventKind.COMPLETED)
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
            return job_claim(queue=queue, worker=complete["worker"], max_timeout=max_timeout)
    except DatabaseError:
        logger.exception("could not finish job %s together with the next claim", complete["job_id"])
    job_complete(**complete)
    return None


def _json_result(result: Any) -> Any:
    if result is None:
        return None
    try:
        return _json_safe({"v": result})["v"]
    except (TypeError, ValueError):
        return repr(result)


_FINISH_FIELDS = ("finished_at", "duration", "heartbeat_at")


def _finish(job: Job, now: datetime) -> None:
    job.finished_at = now
    job.duration = (now - job.started_at).total_seconds() if job.started_at else None
    job.heartbeat_at = None


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
        jtype = _type_or_none(job.type)
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
            _finish(job, now)
            fields = ["status", *_FINISH_FIELDS]
        _save(
            job,
            now,
            [*(values or {}).keys(), *fields, "error", "traceback", "eta", "pause_requested", "cancel_requested"],
        )
        _release_slot(job.pk)
        record_job_event(job=job, kind=kind, actor_id=_actor_id(actor), extra=extra)
        # A failing worker goes on claiming (a due retry included); when the system failed
        # the job, a waiting job needs a wake-up. Back-offs are woken by the dispatch tick.
        if worker is None:
            _slot_freed_without_worker(job.queue, now)
    return job


def job_abandon(*, job_id: Any, worker: str, attempt: int) -> Job | None:
    """This worker stops and the job reached no checkpoint within ``JOBADMIN_SHUTDOWN_GRACE``:
    its type's ``stall_policy`` decides, as after a stall: ``requeue`` queues another
    attempt (from its last checkpoint), ``fail`` fails it. The freed slot wakes a worker."""
    row = Job.objects.filter(pk=job_id).only("type", "queue").first()
    if row is None:
        return None
    jtype = _type_or_none(row.type)
    job = job_fail(
        job_id=job_id,
        worker=worker,
        attempt=attempt,
        error=f"The worker stopped and the job reached no checkpoint within {settings.JOBADMIN_SHUTDOWN_GRACE:g} s.",
        retry=jtype is not None and jtype.stall_policy == "requeue",
        kind=EventKind.STALLED,
    )
    if job is not None:
        _slot_freed_without_worker(job.queue, timezone.now())
    return job


def _type_or_none(name: str) -> Any:
    try:
        return get_job_type(name)
    except LookupError:
        return None


def job_mark_cancelled(*, job_id: Any, worker: str, attempt: int, values: dict[str, Any]) -> bool:
    """At a checkpoint: a requested cancel took effect and the job function unwound."""
    now = timezone.now()
    with transaction.atomic():
        job = _owned_locked(job_id, worker, attempt, values)
        if job is None:
            return False
        job.status = JobStatus.CANCELLED
        job.eta = None
        _finish(job, now)
        _save(job, now, [*values.keys(), *_FINISH_FIELDS, "status", "eta"])
        _release_slot(job.pk)
        record_job_event(job=job, kind=EventKind.CANCELLED)
    return True


# --- Actions by people (API, admin) -----------------------------------------------------------


def job_cancel(*, job: Job, actor: Any = None) -> Job:
    """Queued or paused: cancelled at once. Running: cancelled at its next checkpoint."""
    now = timezone.now()
    with transaction.atomic():
        job = _locked(job)
        if job.status in (JobStatus.QUEUED, JobStatus.PAUSED):
            # Neither holds a worker nor a slot (a paused job was suspended): cancelled at once.
            job.status = JobStatus.CANCELLED
            job.cancel_requested = False
            job.pause_requested = False
            job.eta = None
            _finish(job, now)
            _save(job, now, ["status", "cancel_requested", "pause_requested", "eta", *_FINISH_FIELDS])
            record_job_event(job=job, kind=EventKind.CANCELLED, actor_id=_actor_id(actor))
        elif job.status == JobStatus.RUNNING:
            if job.cancel_requested:
                raise TransitionNotAllowed(
                    action="cancel",
                    status=job.status,
                    message="Cancellation was already requested; the job stops at its next checkpoint.",
                )
            job.cancel_requested = True
            _save(job, now, ["cancel_requested"])
            record_job_event(job=job, kind=EventKind.CANCEL_REQUESTED, actor_id=_actor_id(actor))
        else:
            raise TransitionNotAllowed(action="cancel", status=job.status)
    return job


def job_pause(*, job: Job, actor: Any = None) -> Job:
    """Ask a running job to pause: at its next checkpoint it is suspended (``job_suspend``).

    Refused for a type that cannot continue from a checkpoint (``resumable=False``).
    """
    now = timezone.now()
    with transaction.atomic():
        job = _locked(job)
        jtype = _type_or_none(job.type)
        if jtype is not None and not jtype.resumable:
            raise TransitionNotAllowed(
                action="pause",
                status=job.status,
                message=f"Jobs of type {job.type!r} cannot continue from a checkpoint (resumable=False), "
                "so they cannot be paused; cancel it instead.",
            )
        if job.status != JobStatus.RUNNING:
            raise TransitionNotAllowed(
                action="pause",
                status=job.status,
                message=f"Only a running job can be paused; this one is {job.status}.",
            )
        if job.pause_requested:
            raise TransitionNotAllowed(
                action="pause",
                status=job.status,
                message="A pause was already requested; the job pauses at its next checkpoint.",
            )
        if job.cancel_requested:
            raise TransitionNotAllowed(action="pause", status=job.status, message="The job is being cancelled.")
        job.pause_requested = True
        _save(job, now, ["pause_requested"])
        record_job_event(job=job, kind=EventKind.PAUSE_REQUESTED, actor_id=_actor_id(actor))
    return job


def job_resume(*, job: Job, actor: Any = None) -> Job:
    """A paused job is queued again and continues from its checkpoint; a pause that has not
    taken effect yet is withdrawn. It keeps its priority and its age, so it takes its old
    place among the queued jobs."""
    now = timezone.now()
    with transaction.atomic():
        job = _locked(job)
        suspended = job.status == JobStatus.PAUSED
        if suspended:
            job.status = JobStatus.QUEUED
        elif not (job.status == JobStatus.RUNNING and job.pause_requested):
            raise TransitionNotAllowed(
                action="resume",
                status=job.status,
                message=f"Only a paused job can be resumed; this one is {job.status}.",
            )
        job.pause_requested = False
        _save(job, now, ["status", "pause_requested"])
        record_job_event(job=job, kind=EventKind.RESUMED, actor_id=_actor_id(actor))
        if suspended:
            _request_wakeups(job.queue)
    return job


def job_retry(*, job: Job, actor: Any = None) -> Job:
    """Queue a new attempt of a failed or cancelled job; the old error stays in its events.

    A retry by hand grants the type's full attempt budget again.
    """
    now = timezone.now()
    with transaction.atomic():
        job = _locked(job)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise TransitionNotAllowed(
                action="retry",
                status=job.status,
                message=f"Only a failed or cancelled job can be retried; this one is {job.status}.",
            )
        jtype = _type_or_none(job.type)
        if jtype is None:
            raise TransitionNotAllowed(
                action="retry", status=job.status, message=f"Job type {job.type!r} is no longer registered."
            )
        previous_error = job.error
        job.status = JobStatus.QUEUED
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
        _save(
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
            job=job, kind=EventKind.RETRIED, actor_id=_actor_id(actor), extra={"previous_error": previous_error}
        )
        _request_wakeups(job.queue)
    return job


@dataclass(frozen=True)
class StalledOutcome:
    job_id: str
    status: str
    reason: str


def stalled_jobs_queryset(now: datetime | None = None) -> Any:
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JOBADMIN_STALL_THRESHOLD)
    # A paused job is suspended: it has no worker and no heartbeat to miss.
    return Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )


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
        jtype = _type_or_none(job.type)
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
