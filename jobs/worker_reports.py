"""A worker that cannot reach the database says so where health reads it (issue 21, item 5).

When a wake-up's first database work fails as an outage (refused, too many connections, a
full disk: ``jobs.outage.is_outage``), the worker publishes a record beside its cluster's
stats — on the broker (Redis), which it still reaches, since it got the wake-up — and
removes it at its next wake-up that reaches the database. Records expire after
``RECORD_TTL`` seconds, so a worker that stopped trying stops being reported.
``monitoring.health.check_workers`` lists them at once: no sample to wait for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError

from jobs import outage

logger = logging.getLogger(__name__)

RECORD_TTL = 60
# This process's workers with a record out (one, django-q2 runs a task at a time per process).
_published: set[str] = set()


def _prefix() -> str:
    from django_q.conf import Conf

    # Beside django-q2's ``<Q_STAT>:<cluster>`` keys, not among them (see jobs.signing_key).
    return f"{Conf.Q_STAT}-db:"


@contextmanager
def database_watched(*, worker: str) -> Iterator[None]:
    """Around a wake-up's first database work: an outage is published (and raised again), success
    clears an earlier record."""
    try:
        yield
    except DatabaseError as exc:
        if outage.is_outage(exc):
            database_refused(worker=worker, error=exc)
        raise
    database_answered(worker=worker)


def database_refused(*, worker: str, error: BaseException) -> None:
    """Publish that ``worker`` could not reach the database (never raises)."""
    from django_q.brokers import get_broker

    record = {
        "worker": worker,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "error": f"{error.__class__.__name__}: {str(error).strip()[:300]}",
        "disk_full": outage.is_disk_full(error),
        "at": time.time(),
    }
    try:
        get_broker().set_stat(f"{_prefix()}{worker}", json.dumps(record), RECORD_TTL)
        _published.add(worker)
    except Exception as exc:  # the broker is away too: nothing can carry the news
        logger.warning("could not report the database error of worker %s: %r", worker, exc)


def database_answered(*, worker: str) -> None:
    """``worker`` reached the database again: remove its record, if it published one."""
    if worker in _published:
        forget(worker)


def forget(worker: str) -> None:
    """Remove ``worker``'s record now (it answered, or it is gone for good) instead of at its expiry."""
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    try:
        broker = get_broker()
        if isinstance(broker, Redis):
            broker.connection.delete(f"{_prefix()}{worker}")
        elif broker.cache is not None:
            broker.cache.delete(f"{_prefix()}{worker}")
        _published.discard(worker)
    except Exception as exc:  # it expires on its own
        logger.warning("could not clear the database error of worker %s: %r", worker, exc)


def database_error_records() -> list[dict[str, Any]]:
    """The live records of workers that could not reach the database, oldest first."""
    from django_q.brokers import get_broker

    records = []
    # The ORM broker ignores the pattern and returns every stat: what is not a record is skipped.
    for raw in get_broker().get_stats(f"{_prefix()}*") or []:
        try:
            record = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("worker"), str) and "error" in record:
            records.append(record)
    return sorted(records, key=lambda record: float(record.get("at") or 0))
