"""Helpers the service modules share: who acts, row locks, saves, due times, finishes."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q
from rest_framework.utils.encoders import JSONEncoder

from jobs.models import Job
from jobs.registry import get_job_type

RUN_TASK = "jobs.tasks.run_next"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def actor_pk(actor: Any) -> int | None:
    return getattr(actor, "pk", None) if actor is not None and getattr(actor, "is_authenticated", False) else None


def locked(job: Job | Any) -> Job:
    """Re-read the job under a row lock (a no-op lock on SQLite, where IMMEDIATE serialises)."""
    pk = job.pk if isinstance(job, Job) else job
    return Job.objects.select_for_update().get(pk=pk)


def save_fields(job: Job, now: datetime, fields: Iterable[str]) -> None:
    job.updated_at = now
    job.save(update_fields=[*fields, "updated_at"])


def due(now: datetime) -> Q:
    return Q(run_after__isnull=True) | Q(run_after__lte=now)


def json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """Validated data may hold dates or decimals; store their JSON form."""
    return json.loads(json.dumps(data, cls=JSONEncoder))


FINISH_FIELDS = ("finished_at", "duration", "heartbeat_at")


def finish(job: Job, now: datetime) -> None:
    job.finished_at = now
    job.duration = (now - job.started_at).total_seconds() if job.started_at else None
    job.heartbeat_at = None


def type_or_none(name: str) -> Any:
    """The type of a stored job, or None. A ``django.tasks`` task whose module this process
    has not imported is loaded by its job's type (jobs.django_tasks): the job exists, so the
    name was written by an enqueue, never taken from a request."""
    try:
        return get_job_type(name)
    except LookupError:
        if not name.startswith("task:"):
            return None
    from jobs.django_tasks import load_job_type

    return load_job_type(name)
