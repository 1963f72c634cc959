"""Retention: the purge that the scheduled ``purge-history`` job runs.

Other apps (``monitoring``) add their own purgers here, so ``jobs`` never imports them.
Rows go in batches of ``JOBADMIN_PURGE_BATCH`` so no table is locked for long.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs.models import FINISHED_STATUSES, IDEMPOTENCY_KEY_TTL, IdempotencyKey, Job, JobEvent

# A purger deletes one batch of at most `batch` rows older than its cutoff and returns the count.
Purger = Callable[[int], int]
_purgers: dict[str, Purger] = {}


def register_purger(name: str, purger: Purger) -> None:
    _purgers[name] = purger


def _delete_batch(queryset: QuerySet[Any], batch: int) -> int:
    """Delete the first ``batch`` rows of ``queryset`` in a short transaction of their own."""
    ids = list(queryset.values_list("pk", flat=True)[:batch])
    if ids:
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
    return len(ids)


def purge_jobs_batch(*, before: datetime, batch: int) -> int:
    return _delete_batch(Job.objects.filter(status__in=FINISHED_STATUSES, finished_at__lt=before), batch)


def purge_events_batch(*, before: datetime, batch: int) -> int:
    return _delete_batch(JobEvent.objects.filter(created_at__lt=before), batch)


def purge_idempotency_keys_batch(*, batch: int) -> int:
    """Keys past their 24 h: they no longer return their job (the job itself is kept)."""
    return _delete_batch(IdempotencyKey.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_KEY_TTL), batch)


def history_cutoff(days: int | None = None) -> datetime:
    return timezone.now() - timedelta(days=days if days is not None else settings.JOBADMIN_HISTORY_DAYS)


def purgers(days: int | None = None) -> dict[str, Purger]:
    """Every purger, the built-in ones first: name to a function of the batch size."""
    cutoff = history_cutoff(days)
    return {
        "jobs": lambda batch: purge_jobs_batch(before=cutoff, batch=batch),
        "events": lambda batch: purge_events_batch(before=cutoff, batch=batch),
        "idempotency-keys": lambda batch: purge_idempotency_keys_batch(batch=batch),
        **_purgers,
    }
