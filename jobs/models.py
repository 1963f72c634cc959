"""The job engine's tables: jobs, their results, queues and the append-only event log.

Only ``jobs.services`` writes ``Job.status``; everything else reads.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.RUNNING, JobStatus.PAUSED)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


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

    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    pause_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("manage_others_jobs", "Can view and act on other users' jobs"),
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
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

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


class Queue(models.Model):
    """A queue's concurrency limit and pause switch, shared by every worker process.

    The limit is kept by the queue's ``QueueSlot`` rows.
    """

    name = models.CharField(max_length=50, primary_key=True)
    concurrency = models.PositiveSmallIntegerField(default=5)
    paused = models.BooleanField(default=False)
    # Wake-ups sent and not yet taken by a worker; at most `concurrency` are needed.
    pending_wakeups = models.PositiveIntegerField(default=0)

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
