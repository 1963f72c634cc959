"""When a member of a batch finishes: the batch's last finisher marks it finished and queues
its ``on_complete`` job, exactly once (docs/batches.md, "Finishing and on_complete").

Called inside the member's own finishing transaction, after its status was written. The
batch's row lock serialises the finishers of one batch (on SQLite the write lock already
does): the one that locks last sees every other member's finish committed, so when two
members finish at the same instant on different workers, the second to take the lock sees
no unfinished member and is the one that finishes the batch. ``finished_at IS NULL`` in the
lock's query makes a second finish of the batch (a member retried and finished again) find
nothing to do. Members that are not last pay one locked primary-key read and one probe of
the ``job_batch_status`` index.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework import serializers

from jobs.events import record_event
from jobs.exceptions import QueueNotFound
from jobs.models import Batch, EventKind, Job, JobStatus
from jobs.policy import AccessDenied
from jobs.registry import UnknownJobType

logger = logging.getLogger(__name__)

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


def batch_member_finished(batch_id: int | None) -> Batch | None:
    """Inside the member's transaction: finish its batch if it was the last; the batch then, or None."""
    if batch_id is None:
        return None
    batch = Batch.objects.select_for_update().filter(pk=batch_id, finished_at__isnull=True).first()
    if batch is None or Job.objects.filter(batch_id=batch_id, status__in=UNFINISHED).exists():
        return None
    now = timezone.now()
    batch.finished_at = now
    fields = ["finished_at"]
    problem = ""
    if batch.on_complete and batch.on_complete_job_id is None:
        from jobs.services.claim import job_enqueue  # claim imports the reports that import this

        try:
            with transaction.atomic():
                job = job_enqueue(
                    job_type=batch.on_complete["type"],
                    params=batch.on_complete.get("params"),
                    user=batch.user,
                )
        except (AccessDenied, UnknownJobType, QueueNotFound, DatabaseError, serializers.ValidationError) as exc:
            # The owner may no longer run it, or its type is gone: the batch still finishes.
            logger.warning("batch %s: on_complete not queued: %s", batch_id, exc)
            problem = str(exc)
        else:
            batch.on_complete_job = job
            fields.append("on_complete_job")
    batch.save(update_fields=fields)
    payload: dict[str, Any] = {"batch": {"id": batch.pk, "on_complete_job": _str(batch.on_complete_job_id)}}
    if problem:
        payload["on_complete_error"] = problem
    record_event(kind=EventKind.BATCH_FINISHED, payload=payload)
    return batch


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
