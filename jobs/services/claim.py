"""Enqueue and claim: a job is stored with its first wake-up, and a worker takes it with a slot."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework import serializers

from jobs import counters, policy, rows
from jobs.events import job_snapshot, record_job_event
from jobs.exceptions import IdempotencyKeyReused, QueueNotFound
from jobs.models import (
    IDEMPOTENCY_KEY_TTL,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Batch,
    EventKind,
    IdempotencyKey,
    Job,
    JobEvent,
    JobStatus,
    QueueSlot,
)
from jobs.registry import UnknownJobType, get_job_type
from jobs.services._shared import actor_pk, json_safe
from jobs.services.queues import queue_add_missing_slots, queue_get, request_wakeups, wakeups_wanted


def _take_free_slot(queue: str) -> tuple[int, int] | None:
    """Inside the claim's transaction: lock a free slot of ``queue``; ``(its id, the queue's limit)``.

    On PostgreSQL the slots other claims hold are skipped, so claims of one queue do not
    wait for each other's commits. When none is free and unlocked: a queue without all
    its slot rows (new, or its limit was raised) gets them; otherwise the claim waits for
    the claims holding free-looking slots to commit, and takes one they did not use.
    """
    # SQLite has no row locks: its transaction holds the database's write lock, so nothing
    # runs beside the claim and there is nothing to skip or to wait for.
    locking = connection.features.has_select_for_update_skip_locked
    skip = "skip" if locking else None
    slot = rows.queue_free_slot(queue, lock=skip)
    if slot is None and queue_add_missing_slots(queue):
        slot = rows.queue_free_slot(queue, lock=skip)
    if slot is None and locking:
        slot = rows.queue_free_slot(queue, lock="wait")
    return slot


def job_enqueue(
    *,
    job_type: str,
    params: Any = None,
    user: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    actor: Any = None,
    schedule: Any = None,
    run_after: Any = None,
) -> Job:
    """Validate ``params`` against the type's schema, store the job and wake a worker.

    Raises ``UnknownJobType``, ``policy.AccessDenied`` (``user`` may not run the type, or not
    with a priority above its default),
    ``QueueNotFound`` or DRF's ``ValidationError`` (field messages under the params' field
    names) before anything is written. ``schedule``: the schedule that queues it.
    ``run_after``: a delayed start (an aware datetime): no claim takes the job before then, as
    after a retry's back-off, and the dispatch tick wakes its queue when it is due.
    """
    job = _new_job(job_type=job_type, params=params, user=user, queue=queue, priority=priority)
    job.schedule = schedule
    job.run_after = run_after
    with transaction.atomic():
        _store(job, actor=actor)
    return job


# What one member of ``jobs_enqueue_many`` may name, as the API's enqueue body does (``type`` is required).
MEMBER_FIELDS = frozenset({"type", "params", "queue", "priority"})


def jobs_enqueue_many(
    *, members: Sequence[Mapping[str, Any]], user: Any = None, actor: Any = None, batch: Batch | None = None
) -> list[Job]:
    """Queue several jobs, of one type or several, in one transaction: all of them or none.

    Each member is a mapping like the API's enqueue body (``type``, ``params``, ``queue``,
    ``priority``) and is checked as ``job_enqueue`` checks one job, before anything
    is written: the type, the policy (``user`` may run it, at that priority), the params and
    the queue. A refusal names the member by its index: DRF's ``ValidationError`` with
    ``{"jobs": {"<index>": {field: [messages]}}}`` for every bad member, or
    ``policy.AccessDenied`` for the first forbidden one. Then one transaction writes the jobs
    and their ``created`` events (one multi-row insert each) and counts the wake-ups, at most
    as many per queue as its concurrency lets run (``request_wakeups``), sent after the commit.

    ``batch``: an unsaved ``Batch`` the jobs are the members of; it is saved in the same
    transaction, after every member was checked, and ``JOBADMIN_BATCH_MAX`` is the limit.
    """
    limit, setting = (
        (settings.JOBADMIN_BULK_ENQUEUE_MAX, "JOBADMIN_BULK_ENQUEUE_MAX")
        if batch is None
        else (settings.JOBADMIN_BATCH_MAX, "JOBADMIN_BATCH_MAX")
    )
    if not members:
        raise serializers.ValidationError({"jobs": ["Give at least one job."]})
    if len(members) > limit:
        raise serializers.ValidationError({"jobs": [f"At most {limit} jobs at once ({setting})."]})
    built: dict[int, Job] = {}
    problems: dict[str, Any] = {}
    for index, member in enumerate(members):
        try:
            built[index] = _new_member(member, user=user)
        except policy.AccessDenied as exc:
            raise policy.AccessDenied(f"Job {index}: {exc}", permission=exc.permission) from None
        except serializers.ValidationError as exc:
            problems[str(index)] = exc.detail
    known = _known_queues({job.queue for job in built.values()})
    for index, job in built.items():
        if job.queue not in known:
            problems[str(index)] = {"queue": [str(QueueNotFound(job.queue))]}
    if problems:
        raise serializers.ValidationError({"jobs": dict(sorted(problems.items(), key=lambda item: int(item[0])))})
    jobs = list(built.values())
    now = timezone.now()
    actor_id = actor_pk(actor)
    with transaction.atomic():
        if batch is not None:
            batch.unfinished = len(jobs)
            batch.save()
            for job in jobs:
                job.batch = batch
        rows.insert_many(jobs)
        rows.insert_many(
            [
                JobEvent(
                    kind=EventKind.CREATED,
                    job=job,
                    owner_id=job.user_id,
                    actor_id=actor_id if actor_id is not None else job.user_id,
                    payload={"job": job_snapshot(job)},
                    created_at=job.updated_at or now,
                )
                for job in jobs
            ]
        )
        counters.counters_add_many(name=counters.ENQUEUED, labels=[job.type for job in jobs])
        for queue, count in Counter(job.queue for job in jobs).items():
            if wakeups_wanted(queue):
                request_wakeups(queue, count)
    return jobs


def _new_member(member: Mapping[str, Any], *, user: Any) -> Job:
    """One member of ``jobs_enqueue_many`` as ``_new_job`` builds it; its problems as field messages."""
    if not isinstance(member, Mapping) or "type" not in member:
        raise serializers.ValidationError({"type": ["This field is required."]})
    if unknown := sorted(set(member) - MEMBER_FIELDS):
        raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
    wrong = {}
    if not isinstance(member["type"], str):
        wrong["type"] = ["A job type's name (a string)."]
    if member.get("queue") is not None and not isinstance(member["queue"], str):
        wrong["queue"] = ["A queue's name (a string)."]
    priority = member.get("priority")
    if priority is not None and (type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX):
        wrong["priority"] = [f"An integer from {PRIORITY_MIN} to {PRIORITY_MAX}."]
    if wrong:
        raise serializers.ValidationError(wrong)
    try:
        return _new_job(
            job_type=member["type"],
            params=member.get("params"),
            user=user,
            queue=member.get("queue"),
            priority=member.get("priority"),
        )
    except UnknownJobType:
        raise serializers.ValidationError({"type": [f"Unknown job type {member['type']!r}."]}) from None
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"params": exc.detail}) from None


def _known_queues(names: set[str]) -> set[str]:
    """Those of ``names`` that are queues (a configured queue not created yet is created now)."""
    known = set()
    for name in names:
        try:
            queue_get(name)
        except QueueNotFound:
            continue
        known.add(name)
    return known


@dataclass(frozen=True)
class Enqueued:
    job: Job
    replayed: bool  # the key was used before: this is the job it queued, nothing was queued now


def job_enqueue_once(
    *,
    key: str | None,
    user: Any,
    job_type: str,
    params: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    actor: Any = None,
) -> Enqueued:
    """``job_enqueue`` under an ``Idempotency-Key``: the same key from the same ``user`` within
    ``IDEMPOTENCY_KEY_TTL`` returns the job it queued then, whatever happened in between (a
    retry after a broken connection, two submits at once). A key sent again with another
    request raises ``IdempotencyKeyReused``; nothing is written.

    The key is written in the enqueue's transaction. Two requests with one key at once: on
    PostgreSQL the second's key insert waits for the first's commit, fails on the unique
    constraint, and its whole transaction (its job too) is rolled back; it then returns the
    first's job. On SQLite the enqueues run one after the other. Without a key it is
    ``job_enqueue``.
    """
    if key is None:
        return Enqueued(
            job_enqueue(job_type=job_type, params=params, user=user, queue=queue, priority=priority, actor=actor),
            replayed=False,
        )
    job = _new_job(job_type=job_type, params=params, user=user, queue=queue, priority=priority)
    digest = _request_digest(job)
    if (earlier := _earlier(user, key, digest)) is not None:
        return Enqueued(earlier, replayed=True)
    try:
        with transaction.atomic():
            IdempotencyKey.objects.filter(
                user=user, key=key, created_at__lt=job.created_at - IDEMPOTENCY_KEY_TTL
            ).delete()
            _store(job, actor=actor)
            IdempotencyKey.objects.create(user=user, key=key, request=digest, job=job, created_at=job.created_at)
    except IntegrityError:
        if (earlier := _earlier(user, key, digest)) is None:
            raise  # not the key's constraint
        return Enqueued(earlier, replayed=True)
    return Enqueued(job, replayed=False)


def _earlier(user: Any, key: str, digest: str) -> Job | None:
    """The job a live key of ``user`` queued, or None; raises if that key asked for something else."""
    earlier = (
        IdempotencyKey.objects.filter(user=user, key=key, created_at__gte=timezone.now() - IDEMPOTENCY_KEY_TTL)
        .select_related("job")
        .first()
    )
    if earlier is None:
        return None
    if earlier.request != digest:
        raise IdempotencyKeyReused(key)
    return earlier.job


def _request_digest(job: Job) -> str:
    """What was asked, whatever the order of its JSON keys."""
    asked = {"type": job.type, "params": job.params, "queue": job.queue, "priority": job.priority}
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()


def _new_job(*, job_type: str, params: Any, user: Any, queue: str | None, priority: int | None) -> Job:
    """The job as asked, checked (type, access, params), not stored yet."""
    jtype = get_job_type(job_type)
    if user is not None:  # None: queued by the system itself (retention, schedules' duty)
        policy.require_may_run_job_type(user=user, job_type=jtype)
        policy.require_may_set_priority(user=user, job_type=jtype, priority=priority)
    clean = jtype.validate_params(params)
    owner = user if user is not None and getattr(user, "is_authenticated", False) else None
    now = timezone.now()
    # Built before BEGIN: on SQLite the transaction holds the database's write lock.
    return Job(
        type=jtype.name,
        params=json_safe(clean),
        queue=queue or jtype.queue,
        priority=jtype.priority if priority is None else priority,
        user=owner,
        steps=list(jtype.steps),
        max_attempts=jtype.max_attempts,
        timeout=jtype.timeout,
        resumable=jtype.resumable,
        created_at=now,
        updated_at=now,
    )


def _store(job: Job, *, actor: Any) -> None:
    """Inside the caller's transaction: the job, its ``created`` event and its wake-up."""
    wake = wakeups_wanted(job.queue)  # raises QueueNotFound before anything is written
    rows.insert(job)
    record_job_event(job=job, kind=EventKind.CREATED, actor_id=actor_pk(actor or job.user))
    counters.counter_add(name=counters.ENQUEUED, label=job.type)
    if wake:
        request_wakeups(job.queue)


def user_share(concurrency: int) -> int:
    """The slots of a queue of ``concurrency`` one owner may hold while others' jobs wait:
    ``ceil(JOBADMIN_USER_QUEUE_SHARE x concurrency)``, at least one (docs/engine.md)."""
    return max(1, math.ceil(settings.JOBADMIN_USER_QUEUE_SHARE * concurrency - 1e-9))


def check_user_queue_share(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A system check: ``JOBADMIN_USER_QUEUE_SHARE`` is a fraction in (0, 1]."""
    share = settings.JOBADMIN_USER_QUEUE_SHARE
    if isinstance(share, int | float) and 0 < share <= 1:
        return []
    return [
        checks.Error(
            f"JOBADMIN_USER_QUEUE_SHARE must be a fraction above 0 and at most 1, not {share!r}.",
            hint="0.5: a user holds at most half a queue's slots while others' jobs wait; 1 turns the rule off.",
            id="jobs.E001",
        )
    ]


def _next_fair_job(*, queue: str, now: Any, lock: bool, concurrency: int) -> Job | None:
    """Inside the claim's transaction, with a slot taken: the job it gets (docs/engine.md,
    "The scheduler's rule").

    The best runnable job (priority, then age) of the owners holding fewer than their share
    of the queue's slots; if only owners at their share have jobs waiting, the best of
    those (work-conserving: no slot idles while a job waits). Jobs without a user are one
    owner, the system. On SQLite the write lock serialises claims. On PostgreSQL claims run
    side by side and one cannot see the slots another has taken but not committed, so when
    another owner's job waits, the claim of an owner's job takes that owner's advisory lock
    (held to commit) and counts again: two claims cannot both give one owner its last
    share. With nobody else waiting no lock is taken, so one user's backlog (a batch, the
    benchmark) is claimed as fast as before.
    """
    share = user_share(concurrency)
    if share >= concurrency:  # nobody can hold more than their share
        return rows.next_runnable_job(queue=queue, now=now, lock=lock)
    full = set(rows.queue_owners_holding(queue, at_least=share))
    while True:
        if full and not rows.queue_jobs_waiting_beside(queue, excluding=tuple(full), now=now):
            # Only owners at their share are waiting: the best of theirs.
            return rows.next_runnable_job(queue=queue, now=now, lock=lock)
        job = rows.next_runnable_job(queue=queue, now=now, lock=lock, excluding=tuple(full))
        if job is None:
            # The others' jobs are being claimed by other workers: work-conserving.
            return rows.next_runnable_job(queue=queue, now=now, lock=lock) if full else None
        owner = job.user_id or rows.SYSTEM_OWNER
        if not lock or not rows.queue_jobs_waiting_beside(queue, excluding=(*full, owner), now=now):
            return job
        rows.queue_owner_lock(queue, owner)
        if rows.queue_owner_slots(queue, owner) < share:
            return job
        full.add(owner)  # a claim that committed meanwhile gave it its share: look again


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
        free = _take_free_slot(queue)
        if free is None:
            return None
        slot, concurrency = free
        # Plain SQL (see jobs.rows): these run for every job a worker takes.
        job = _next_fair_job(queue=queue, now=now, lock=lock, concurrency=concurrency)
        if job is None or (max_timeout is not None and job.timeout > max_timeout):
            return None
        # A job with a checkpoint continues (after a pause, a shutdown or a stall): its first
        # start and its figures are kept. A suspended job (paused, or its worker stopped)
        # continues its attempt; one queued again after a failure or a stall, as its next.
        checkpoint: dict[str, Any] = job.checkpoint or {}
        continuing = job.checkpoint is not None and job.started_at is not None
        suspended = continuing and bool(checkpoint.get("suspended"))
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
            values["checkpoint"] = {"step": checkpoint.get("step", 0), "cursor": checkpoint.get("cursor")}
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
