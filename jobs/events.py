"""Writing the event log. Called only from ``jobs.services``, inside its transactions.

On PostgreSQL a trigger on the log (``live`` migration 0002) NOTIFYs the relay when such a
transaction commits: nothing to do here, and no extra round trip per event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from jobs import rows
from jobs.models import Job, JobEvent


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_snapshot(job: Job) -> dict[str, Any]:
    """The job as subscribers see it in a ``job-update`` (and as replay returns it)."""
    return {
        "id": str(job.id),
        "type": job.type,
        "status": job.status,
        "queue": job.queue,
        "priority": job.priority,
        "progress": round(job.progress, 2),
        "current_step": job.current_step,
        "step_name": job.step_name,
        "steps": list(job.steps),
        "processed_items": job.processed_items,
        "total_items": job.total_items,
        "error_count": job.error_count,
        "eta": _iso(job.eta),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "updated_at": _iso(job.updated_at),
        "user": job.user_id,
        "batch": job.batch_id,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "pause_requested": job.pause_requested,
        # What ``TRANSITIONS`` allows from this state (the API's ``actions``): a page offers these
        # (to a user the policy lets act) without a copy of the table.
        "actions": job.allowed_actions(),
    }


def record_job_event(
    *, job: Job, kind: str, actor_id: int | None = None, extra: dict[str, Any] | None = None
) -> JobEvent:
    payload: dict[str, Any] = {"job": job_snapshot(job)}
    if extra:
        payload.update(extra)
    event = JobEvent(
        kind=kind,
        job=job,
        owner_id=job.user_id,
        actor_id=actor_id,
        payload=payload,
        created_at=job.updated_at or timezone.now(),
    )
    rows.insert(event)
    return event


def record_event(*, kind: str, payload: dict[str, Any], actor_id: int | None = None) -> JobEvent:
    """An event that belongs to no job (queue changes, alerts)."""
    event = JobEvent(kind=kind, actor_id=actor_id, payload=payload, created_at=timezone.now())
    rows.insert(event)
    return event
