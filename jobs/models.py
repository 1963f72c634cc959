"""The job engine's tables: jobs, their results, queues and the append-only event log.

Only ``jobs.services`` writes ``Job.status``; everything else reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from jobs.exceptions import TransitionNotAllowed

# A job's priority: higher runs first. The bounds of every way in (the API, bulk enqueue).
PRIORITY_MIN, PRIORITY_MAX = -100, 100


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.RUNNING, JobStatus.PAUSED)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Transition:
    """What an action does to a job in one status: one cell of ``TRANSITIONS``.

    ``to`` is the job's status right after the action. An action that stays in ``running``
    sets a request flag instead, and the worker applies it at the job's next checkpoint.
    ``requires`` names a flag the job must have set, ``refused_if`` the flags that refuse
    the action, each with the reason people are shown.
    """

    to: str
    requires: str = ""
    refused_if: tuple[tuple[str, str], ...] = ()


# The actions people (API, admin, pages) may take on a job: action -> the statuses it is
# allowed from -> what it does. The one home of this rule: ``jobs.services.actions`` checks
# it, ``Job.allowed_actions()`` derives from it, the API's ``actions`` field, the admin's
# buttons and the pages' scripts read it. The worker's own transitions (claim, pause and
# cancel at a checkpoint, finish, fail) are in ``jobs.services.reports``.
TRANSITIONS: Mapping[str, Mapping[str, Transition]] = {
    "cancel": {
        JobStatus.QUEUED: Transition(JobStatus.CANCELLED),
        JobStatus.PAUSED: Transition(JobStatus.CANCELLED),
        # Cancelled at its next checkpoint.
        JobStatus.RUNNING: Transition(
            JobStatus.RUNNING,
            refused_if=(
                ("cancel_requested", "Cancellation was already requested; the job stops at its next checkpoint."),
            ),
        ),
    },
    "retry": {
        JobStatus.FAILED: Transition(JobStatus.QUEUED),
        JobStatus.CANCELLED: Transition(JobStatus.QUEUED),
    },
    "pause": {
        # Suspended at its next checkpoint (its worker and slot are freed then).
        JobStatus.RUNNING: Transition(
            JobStatus.RUNNING,
            refused_if=(
                (
                    "not_resumable",
                    "This job's type cannot continue from a checkpoint (resumable=False), so it cannot be "
                    "paused; cancel it instead.",
                ),
                ("pause_requested", "A pause was already requested; the job pauses at its next checkpoint."),
                ("cancel_requested", "The job is being cancelled."),
            ),
        ),
    },
    "resume": {
        # Queued again; a worker continues it from its checkpoint.
        JobStatus.PAUSED: Transition(JobStatus.QUEUED),
        # Withdraws a pause that has not taken effect yet.
        JobStatus.RUNNING: Transition(JobStatus.RUNNING, requires="pause_requested"),
    },
}

# The names of the actions, in the table's order (the API's choice set ``ActionEnum``).
ACTION_NAMES: list[str] = list(TRANSITIONS)

# Why an action is refused in a status it is not allowed from (or without its ``requires``).
REFUSALS: Mapping[str, str] = {
    "cancel": "Cannot cancel a job that is {status}.",
    "retry": "Only a failed or cancelled job can be retried; this one is {status}.",
    "pause": "Only a running job can be paused; this one is {status}.",
    "resume": "Only a paused job can be resumed; this one is {status}.",
}


def job_states() -> dict[str, Any]:
    """The statuses and ``TRANSITIONS`` as JSON for the pages' scripts, so they keep no copy.

    Rendered into the job page and the live monitor (``json_script``): the scripts show a
    job's status, tell live jobs from finished ones and offer the actions its state allows
    by reading this, the same table the services check.
    """
    return {
        "labels": dict(JobStatus.choices),
        "live": [JobStatus.QUEUED, *ACTIVE_STATUSES],
        "active": list(ACTIVE_STATUSES),
        "finished": list(FINISHED_STATUSES),
        "transitions": {
            action: {
                status: {"to": cell.to, "requires": cell.requires, "refused_if": [flag for flag, _ in cell.refused_if]}
                for status, cell in cells.items()
            }
            for action, cells in TRANSITIONS.items()
        },
    }


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    queue = models.CharField(max_length=50, default="default")
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first within a queue.")
    # No index of its own: ``job_user_created`` starts with it, and each index costs every
    # write of the row (a job's row is written three times).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,
    )

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Not before this time: set by retry backoff.
    run_after = models.DateTimeField(null=True, blank=True)
    # Stored when the job finishes so that ordering by duration can use an index.
    duration = models.FloatField(null=True, blank=True, help_text="Seconds from start to finish.")
    queue_wait = models.FloatField(null=True, blank=True, help_text="Seconds from queued to started.")

    progress = models.FloatField(default=0)
    current_step = models.PositiveSmallIntegerField(default=0)
    steps = models.JSONField(default=list, blank=True)
    total_items = models.PositiveBigIntegerField(null=True, blank=True)
    processed_items = models.PositiveBigIntegerField(default=0)
    error_count = models.PositiveBigIntegerField(default=0)
    eta = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=1)
    timeout = models.PositiveIntegerField(default=600, help_text="Seconds one attempt may run.")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    # Where a resumable job stopped: ``{"step": <index>, "cursor": <JSON>}``, written with its
    # reports. A run that finds it set continues there (docs/jobs.md); null starts afresh.
    checkpoint = models.JSONField(null=True, blank=True)
    # The type's ``resumable`` when the job was queued, kept like its timeout and attempts: the
    # transition table reads it (a pause is refused without it) without asking the registry.
    resumable = models.BooleanField(default=True)

    # The schedule that queued it (its recent runs are these), or null.
    schedule = models.ForeignKey(
        "jobs.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs", db_index=False
    )

    # The batch it is a member of (docs/batches.md), or null.
    batch = models.ForeignKey(
        "jobs.Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="members", db_index=False
    )

    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    pause_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        # Seeing everyone's jobs is Django's own ``view_job``, acting on them ``change_job``
        # (jobs.policy); these two are for the job types that need them.
        permissions = [
            ("purge_history", "Can run purge-history (deletes every user's old jobs)"),
            ("run_management_command", "Can run management commands as jobs"),
        ]
        indexes = [
            models.Index(fields=["-created_at", "id"], name="job_created"),
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(fields=["type", "-created_at"], name="job_type_created"),
            models.Index(fields=["queue", "-created_at"], name="job_queue_created"),
            models.Index(fields=["user", "-created_at"], name="job_user_created"),
            models.Index(fields=["-updated_at"], name="job_updated"),
            models.Index(fields=["-started_at"], name="job_started"),
            models.Index(fields=["-finished_at"], name="job_finished"),
            models.Index(fields=["-priority", "-created_at"], name="job_priority"),
            models.Index(fields=["-duration"], name="job_duration"),
            # The list filtered by status and ordered by duration (both directions): SQLite
            # otherwise sorts every job of the status (50,000 failed of a million: 110 ms).
            models.Index(fields=["status", "duration", "created_at"], name="job_status_duration"),
            # Statistics: nearest-rank p95 of a window's durations and waits by an index-only scan.
            models.Index(fields=["duration", "created_at"], name="job_duration_created"),
            models.Index(fields=["queue_wait", "created_at"], name="job_wait_created"),
            # The dispatcher: the best queued job of a queue, and the count of its active
            # jobs. Not a partial index: SQLite cannot use one when the status comes in as
            # a bound parameter, and then each claim scanned the queue's whole history.
            models.Index(fields=["queue", "status", "-priority", "created_at"], name="job_dispatch"),
            # Fair queues: is a job of another owner than those at their share waiting? One
            # probe per range of owners (jobs.rows.queue_jobs_waiting_beside).
            models.Index(fields=["queue", "status", "user"], name="job_queue_owner"),
            # A schedule's recent runs, newest first.
            models.Index(fields=["schedule", "-created_at"], name="job_schedule_created"),
            # A batch's members by status: its counts, and "is any member unfinished?" when one finishes.
            models.Index(fields=["batch", "status"], name="job_batch_status"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def refusal(self, action: str) -> str | None:
        """Why ``TRANSITIONS`` refuses ``action`` for this job now, or None if it allows it."""
        cell = TRANSITIONS[action].get(self.status)
        if cell is None or (cell.requires and not getattr(self, cell.requires)):
            return REFUSALS[action].format(status=self.status)
        for flag, reason in cell.refused_if:
            if getattr(self, flag):
                return reason
        return None

    def transition(self, action: str) -> Transition:
        """The ``TRANSITIONS`` cell of ``action`` for this job; ``TransitionNotAllowed`` if refused."""
        reason = self.refusal(action)
        if reason is not None:
            raise TransitionNotAllowed(action=action, status=self.status, message=reason)
        return TRANSITIONS[action][self.status]

    @property
    def not_resumable(self) -> bool:
        """Its type cannot continue from a checkpoint (``resumable=False``): a pause is refused."""
        return not self.resumable

    def allowed_actions(self) -> list[str]:
        """The actions of ``TRANSITIONS`` this job allows now, in the table's order."""
        return [action for action in TRANSITIONS if self.refusal(action) is None]

    @property
    def step_name(self) -> str:
        if 0 <= self.current_step < len(self.steps):
            return str(self.steps[self.current_step])
        return ""


def result_upload_to(instance: JobResult, filename: str) -> str:
    return f"results/{instance.job_id}/{filename}"


class JobResult(models.Model):
    job = models.OneToOneField(Job, primary_key=True, on_delete=models.CASCADE, related_name="result")
    data = models.JSONField(null=True, blank=True)
    file = models.FileField(upload_to=result_upload_to, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Result of {self.job_id}"


class Batch(models.Model):
    """Related jobs queued together as one unit (docs/batches.md). Its status, counts,
    progress and ETA are read from its members (``jobs.services.batches``); ``finished_at``
    is set once, by the member that finished last, which also queues ``on_complete``."""

    name = models.CharField(max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # ``{"type": ..., "params": {...}}`` queued once when every member has finished, or null.
    on_complete = models.JSONField(null=True, blank=True)
    on_complete_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    cancelled = models.BooleanField(default=False, help_text="Cancelled as a whole.")
    # Members not finished yet: each finish takes one off (its row lock serialises the
    # finishers), a retry puts one back; the finish that reaches 0 finishes the batch.
    unfinished = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="batch_user_created")]
        verbose_name_plural = "batches"  # not Django's "batchs"

    def __str__(self) -> str:
        return self.name


class Schedule(models.Model):
    """Queues a job type with fixed params on a cron expression in a time zone, or every
    ``interval_minutes`` (docs/schedules.md). The monitor queues it when ``next_run_at`` is due
    (``jobs.services.schedules_fire``); only ``jobs.services`` writes it."""

    name = models.CharField(max_length=100)
    # Before ``timezone``, whose name hides django.utils.timezone in the rest of this body.
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    type = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=50, blank=True, help_text="Empty: the type's queue.")
    priority = models.SmallIntegerField(null=True, blank=True, help_text="Empty: the type's.")
    cron = models.CharField(max_length=200, blank=True, help_text="Five fields, minute resolution, e.g. 0 3 * * 1-5.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="The zone the cron expression is read in.")
    interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    # Why it was paused by itself (its owner may no longer run its type), or empty.
    last_error = models.TextField(blank=True)
    # As whom its jobs run (the policy asks for this user at each run); null: the system.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="schedule_due")]

    def __str__(self) -> str:
        return self.name


class Queue(models.Model):
    """A queue's concurrency limit and pause switch, shared by every worker process.

    The limit is kept by the queue's ``QueueSlot`` rows.
    """

    name = models.CharField(max_length=50, primary_key=True)
    concurrency = models.PositiveSmallIntegerField(default=5)
    paused = models.BooleanField(default=False)
    # Wake-ups sent and not yet taken by a worker; at most `concurrency` are needed.
    pending_wakeups = models.PositiveIntegerField(default=0)
    # When the last of them was counted. Older than JOBADMIN_WAKEUP_LOST_AFTER with none
    # taken since, they are believed lost (a broker restarted empty): see jobs.rows.
    wakeup_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        permissions = [("pause_queue", "Can pause and resume queues")]

    def __str__(self) -> str:
        return self.name


class QueueSlot(models.Model):
    """One unit of a queue's concurrency: a running or paused job holds one.

    A claim takes a free slot under a row lock that skips the slots other claims hold
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so the claims of one queue do not wait
    for each other's commits and the limit still holds across every worker process.
    A raised limit takes effect at once: the first claim that finds no free slot adds the
    missing rows. Slots numbered at or above a lowered limit are never taken again, and
    while their jobs run the queue claims nothing, so the new limit is never exceeded.
    Written only by ``jobs.services``.
    """

    queue = models.CharField(max_length=50)
    number = models.PositiveSmallIntegerField()
    job = models.OneToOneField(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="slot")

    class Meta:
        ordering = ["queue", "number"]
        constraints = [models.UniqueConstraint(fields=["queue", "number"], name="queueslot_queue_number")]

    def __str__(self) -> str:
        return f"{self.queue}#{self.number}"


class EventKind(models.TextChoices):
    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    STEP = "step"
    LOG = "log"
    PAUSE_REQUESTED = "pause-requested"
    PAUSED = "paused"
    # Stopped at a checkpoint and queued again to continue (a worker's shutdown, a
    # withdrawn pause): the job keeps its attempt and its place.
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    CANCEL_REQUESTED = "cancel-requested"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    STALLED = "stalled"
    ALERT = "alert"
    QUEUE_PAUSED = "queue-paused"
    QUEUE_RESUMED = "queue-resumed"
    # A schedule's own changes (``payload["schedule"]``); a job it queued has its own ``created``.
    SCHEDULE_CHANGED = "schedule-changed"
    SCHEDULE_PAUSED = "schedule-paused"
    SCHEDULE_RESUMED = "schedule-resumed"
    SCHEDULE_RUN = "schedule-run"
    # Due, but its owner may no longer run its type: nothing was queued and it was paused.
    SCHEDULE_REFUSED = "schedule-refused"
    # A batch's own actions (``payload["batch"]``, its summary); each member has its own events.
    BATCH_CREATED = "batch-created"
    BATCH_CANCELLED = "batch-cancelled"
    BATCH_RETRIED = "batch-retried"
    BATCH_FINISHED = "batch-finished"


class JobEvent(models.Model):
    """One row of the append-only event log (the transactional outbox).

    Written in the same transaction as the change it reports. ``id`` is the public
    ``event_id``. ``payload`` holds a snapshot of what subscribers are sent, so replay
    and the relay need no second query.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    # Indexed by ``event_job`` (job, id) alone.
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="events", db_index=False)
    # The job owner at the time, so the relay can route to `user.<id>` without a join.
    owner_id = models.IntegerField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="event_job")]

    def __str__(self) -> str:
        return f"#{self.id} {self.kind}"

    @property
    def actor_label(self) -> str:
        return self.actor.get_username() if self.actor_id and self.actor else "system"

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.id,
            "kind": self.kind,
            "job": str(self.job_id) if self.job_id else None,
            "actor": self.actor_id,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }


# How long an ``Idempotency-Key`` returns the job it queued (DESIGN.md, "JSON API").
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a user sent with an enqueue, and the job it queued.

    Written in the enqueue's own transaction, so a key never names a job that was not
    committed, and a job queued with a key always has it. The same key from the same user
    within ``IDEMPOTENCY_KEY_TTL`` returns that job instead of queuing again; another user's
    key of the same text is theirs alone. ``request`` is a digest of what was asked (type,
    params, queue, priority): a key sent again with another request is refused.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request = models.CharField(max_length=64)
    # The job it queued, or (``POST /api/batches/``) the batch: one of the two.
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    batch = models.ForeignKey("jobs.Batch", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} → {self.job_id}"


# The bounds (seconds) of the run-time histogram (``/metrics``' ``jobadmin_job_duration_seconds``
# and the statistics buckets' cumulative columns): one home, read by both.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600)


class CounterEvent(models.Model):
    """One increment of a counter that only grows (``jobs.counters``), written in the transaction of
    the change it counts, and folded into ``CounterTotal`` by the monitor.

    An insert, not an update of a shared row: concurrent finishes never wait on each other's
    row lock, and two transactions counting in opposite orders cannot deadlock.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=32)
    label = models.CharField(max_length=200)  # the job type, or the alert rule
    # Index into DURATION_BUCKETS of the first bound at or above the run time (len: +Inf); -1: none.
    bucket = models.SmallIntegerField(default=-1)
    amount = models.FloatField(default=0.0)  # the run time in seconds, for a finish

    def __str__(self) -> str:
        return f"{self.name} {self.label}"


class CounterTotal(models.Model):
    """The folded counters: how many ``CounterEvent`` rows of each (name, label, bucket) there were,
    and the sum of their amounts. Never purged."""

    name = models.CharField(max_length=32)
    label = models.CharField(max_length=200)
    bucket = models.SmallIntegerField(default=-1)
    count = models.BigIntegerField(default=0)
    amount = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "label", "bucket"], name="counter_total_key")]

    def __str__(self) -> str:
        return f"{self.name} {self.label} {self.bucket}: {self.count}"
