"""When a member of a batch finishes or is queued again: its batch's count of unfinished
members follows, and the finish that takes it to 0 finishes the batch and queues its
``on_complete`` job, exactly once (docs/batches.md, "Finishing and on_complete").

Called inside the member's own transaction, after its status was written. The count is
one ``UPDATE ... RETURNING`` on the batch's row: the row lock it takes serialises the
finishers of one batch until they commit (on SQLite the write lock already does), so when
two members finish at the same instant on different workers, exactly one of them reads 0.
That is all a member that is not last pays: one statement.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework import serializers

from jobs import rows
from jobs.events import record_event
from jobs.exceptions import QueueNotFound
from jobs.models import Batch, EventKind
from jobs.policy import AccessDenied
from jobs.registry import UnknownJobType

logger = logging.getLogger(__name__)


def batch_member_requeued(batch_id: int | None) -> None:
    """Inside the member's transaction: a finished member was queued again (a retry)."""
    if batch_id is not None:
        rows.batch_member_requeued(batch_id)


def batch_member_finished(batch_id: int | None) -> Batch | None:
    """Inside the member's transaction: finish its batch if it was the last; the batch then, or None."""
    if batch_id is None:
        return None
    if rows.batch_member_finished(batch_id) != 0:
        return None
    batch = Batch.objects.filter(pk=batch_id).select_related("user").first()
    if batch is None:
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
