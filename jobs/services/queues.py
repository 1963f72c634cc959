"""Queues and wake-ups: slots, the in-flight wake-up count, pausing a queue, the dispatch tick.

A queued job owns no broker task: a wake-up (``jobs.tasks.run_next``) claims the best
runnable job of its queue. Wake-ups are counted in ``Queue.pending_wakeups`` inside the
transaction that asks for them and sent to the broker after its commit; with the ORM broker
in the jobs' own database (the embedded default) they are written in that transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs import rows
from jobs.events import record_event
from jobs.exceptions import QueueNotFound, TransitionNotAllowed
from jobs.models import EventKind, Job, JobStatus, Queue, QueueSlot
from jobs.services._shared import RUN_TASK, actor_pk, due

logger = logging.getLogger(__name__)


def queue_ensure_defaults() -> None:
    """Create the queues named in ``JOBADMIN_QUEUES`` that do not exist yet."""
    for name, concurrency in settings.JOBADMIN_QUEUES.items():
        _, created = Queue.objects.get_or_create(name=name, defaults={"concurrency": concurrency})
        if created:
            queue_add_missing_slots(name)


def queue_get(name: str) -> Queue:
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


def wakeups_lost_before(now: datetime) -> datetime:
    """The cut-off before which wake-ups counted in flight, none taken since, are believed lost.

    A wake-up is taken within moments while a worker is free; one that a broker restarted
    empty lost is never taken, and counting it would stop every later enqueue from sending
    one until the monitor's dispatch tick. Past ``JOBADMIN_WAKEUP_LOST_AFTER`` the count is
    forgotten: a wake-up that was only waiting for a busy worker makes at most one extra,
    which claims nothing.
    """
    return now - timedelta(seconds=settings.JOBADMIN_WAKEUP_LOST_AFTER)


def wakeups_wanted(name: str) -> bool:
    """Whether ``name`` has room for another wake-up in flight; raises ``QueueNotFound``.

    The enqueue path's one read of the queue (plain SQL, see ``jobs.rows``).
    """
    room = rows.queue_wakeup_room(name, lost_before=wakeups_lost_before(timezone.now()))
    if room is None:
        queue_get(name)
        room = True  # a queue just created has none in flight
    return room


def send_wakeups(queue: str, count: int = 1) -> None:
    """Send ``count`` wake-ups for ``queue`` to the broker now (outside any transaction).

    Callers count them in ``Queue.pending_wakeups`` first (see ``request_wakeups``). It
    runs after the caller's commit, so it never raises: with the broker away (Redis
    restarting) the job is committed all the same, and a 500 would make the user enqueue
    it again. The wake-ups not sent are uncounted, so that the next enqueue or the
    monitor's dispatch tick sends them instead of believing them in flight.
    """
    for sent in range(count):
        try:
            _enqueue_wakeup(queue)
        except Exception as exc:  # the broker's own errors (redis.ConnectionError, ...)
            logger.warning("wake-up for queue %s not sent (%r); the job waits for the next one", queue, exc)
            Queue.objects.filter(name=queue).update(pending_wakeups=Greatest(F("pending_wakeups") - (count - sent), 0))
            return


def request_wakeups(queue: str, count: int = 1, *, force: bool = False) -> int:
    """Inside a transaction: count wake-ups for ``queue`` and send them after the commit.

    A wake-up keeps claiming jobs of its queue until none is left (see
    ``jobs.tasks.run_next``), so no more than ``concurrency`` of them need to be in flight;
    beyond that a request sends nothing. ``force`` sends regardless (the dispatcher's
    safety net, which resets the count when the broker is empty).
    """
    now = timezone.now()
    sent = rows.queue_count_wakeups(queue, count, force=force, now=now, lost_before=wakeups_lost_before(now))
    if sent and broker_in_the_jobs_database():
        # The ORM broker's rows are in the same database: they commit (or roll back) with
        # the job, in one commit instead of a second transaction after it.
        for _ in range(sent):
            _enqueue_wakeup(queue)
    elif sent:
        transaction.on_commit(lambda: send_wakeups(queue, sent))
    return sent


def broker_in_the_jobs_database() -> bool:
    """django-q2's ORM broker on the database the jobs are in (the embedded default)."""
    from django_q.conf import Conf

    return Conf.ORM == DEFAULT_DB_ALIAS and not Conf.SYNC


def _enqueue_wakeup(queue: str) -> None:
    from django_q.tasks import async_task

    async_task(RUN_TASK, queue, save=False, task_name=f"run-next:{queue}")


def wakeup_received(queue: str) -> None:
    """A wake-up left the broker and a worker took it: it is no longer in flight."""
    Queue.objects.filter(name=queue, pending_wakeups__gt=0).update(pending_wakeups=F("pending_wakeups") - 1)


def wakeup_if_waiting(queue: str) -> int:
    """Hand the queue's remaining runnable jobs to a fresh wake-up (at the back of the broker)."""
    with transaction.atomic():
        if Job.objects.filter(queue=queue, status=JobStatus.QUEUED).filter(due(timezone.now())).exists():
            return request_wakeups(queue)
    return 0


def queue_active_count(queue: str) -> int:
    """Running and paused jobs of ``queue``: the slots they hold (see ``QueueSlot``)."""
    return rows.queue_slots_held(queue)


def queue_add_missing_slots(queue: str) -> bool:
    """Create the slot rows ``queue``'s concurrency asks for and it lacks; True if it lacked any."""
    row = rows.queue_slot_shortfall(queue)
    if row is None or row[1] >= row[0]:
        return False
    QueueSlot.objects.bulk_create(
        [QueueSlot(queue=queue, number=number) for number in range(row[0])], ignore_conflicts=True
    )
    return True


def release_slot(job_id: Any) -> None:
    """Inside the transaction that ends a job's active state: its slot is free again."""
    rows.update(QueueSlot, {"job": None}, job=job_id)


def release_orphaned_slots() -> int:
    """Free slots held by jobs that are no longer running; returns how many.

    Every transition out of those states frees its slot in its own transaction, so this
    finds nothing unless a job's status was changed behind ``jobs.services`` (by SQL, say).
    The monitor runs it with the dispatch tick. A slot taken or freed meanwhile is never
    a match: both changes commit together with the job's status.
    """
    # Only a running job holds a slot: a paused one was suspended and gave its slot back.
    # Read first: on SQLite a write transaction every tick would take the write lock.
    if not rows.orphaned_slots_exist():
        return 0
    with transaction.atomic():
        return rows.orphaned_slots_release()


def slot_freed_without_worker(queue: str, now: datetime) -> None:
    """A slot was freed by the system or a person, not by a worker that goes on claiming."""
    runnable = Job.objects.filter(queue=queue, status=JobStatus.QUEUED).filter(due(now))
    if runnable.exists():
        request_wakeups(queue)


def queue_pause(*, name: str, actor: Any = None) -> Queue:
    with transaction.atomic():
        queue = queue_get(name)
        queue = Queue.objects.select_for_update().get(pk=queue.pk)
        if queue.paused:
            raise TransitionNotAllowed(action="pause", status="paused", message=f"Queue {name!r} is already paused.")
        queue.paused = True
        queue.save(update_fields=["paused"])
        record_event(kind=EventKind.QUEUE_PAUSED, payload={"queue": name}, actor_id=actor_pk(actor))
    return queue


def queue_resume(*, name: str, actor: Any = None) -> Queue:
    with transaction.atomic():
        queue = queue_get(name)
        queue = Queue.objects.select_for_update().get(pk=queue.pk)
        if not queue.paused:
            raise TransitionNotAllowed(action="resume", status="active", message=f"Queue {name!r} is not paused.")
        queue.paused = False
        queue.save(update_fields=["paused"])
        record_event(kind=EventKind.QUEUE_RESUMED, payload={"queue": name}, actor_id=actor_pk(actor))
        now = timezone.now()
        waiting = Job.objects.filter(queue=name, status=JobStatus.QUEUED).filter(due(now)).count()
        request_wakeups(name, min(waiting, max(queue.concurrency - queue_active_count(name), 0)))
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
                wanted = max(wanted, waiting.filter(due(now)).count())
            sent += request_wakeups(queue.name, min(wanted, free), force=True)
    return sent
