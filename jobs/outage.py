"""A worker's view of a database outage: which errors are one, and how long it rides them out.

A worker that loses the database keeps its job: reports are kept in memory and written
when the database is back, heartbeats are retried, and the outcome waits for the database
(``jobs.context``, ``jobs.tasks``). It gives the job up only after ``give_up_after()``
seconds: ``JOBADMIN_DB_OUTAGE_GRACE``, capped so that a worker never holds a job that the
stall sweep may already have given to another (its heartbeat is older than
``JOBADMIN_STALL_THRESHOLD``). docs/engine.md, "Database outages", tells the whole story.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.checks import Warning
from django.db import DatabaseError, InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

# Seconds between two tries to reach the database again.
RETRY_EVERY = 1.0

# A full disk, as each database says it: SQLite's SQLITE_FULL ("database or disk is full"),
# PostgreSQL's SQLSTATE 53100 disk_full ("could not extend file …: No space left on device").
SQLITE_FULL = 13
PG_DISK_FULL = "53100"
_DISK_FULL_TEXTS = ("database or disk is full", "could not extend file", "no space left on device")
# How long a write that failed on a full disk is reported by health (``disk_full_seen``).
DISK_FULL_REMEMBERED = 60.0
DISK_FULL_CACHE_KEY = "jobs:disk_full_at"
_disk_full_at = {"at": 0.0}


def is_outage(exc: BaseException) -> bool:
    """A lost or refused connection (or a locked SQLite file), not a bad query: worth waiting for."""
    return isinstance(exc, (OperationalError, InterfaceError))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or the driver's error it wraps) says the database's disk is full."""
    seen: BaseException | None = exc
    for _ in range(4):  # Django's error, its __cause__ (the driver's), and what that wraps
        if seen is None:
            break
        if getattr(seen, "sqlite_errorcode", None) == SQLITE_FULL or getattr(seen, "sqlstate", None) == PG_DISK_FULL:
            return True
        if any(text in str(seen).lower() for text in _DISK_FULL_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_noted(exc: BaseException) -> bool:
    """If ``exc`` is a full disk, remember it (this process, and the cache for the others) for
    health; returns whether it was one. The cache may sit on the same full disk: then only this
    process knows."""
    if not is_disk_full(exc):
        return False
    now = time.time()
    _disk_full_at["at"] = now
    try:
        cache.set(DISK_FULL_CACHE_KEY, now, timeout=int(DISK_FULL_REMEMBERED))
    except Exception as cache_error:  # a full disk under the database cache, Redis away
        logger.debug("could not share the full disk through the cache: %r", cache_error)
    return True


def disk_full_seen() -> float | None:
    """Seconds since a write last failed on a full disk (this process or, through the cache, another),
    if within ``DISK_FULL_REMEMBERED``; None otherwise."""
    times = [_disk_full_at["at"]]
    try:
        times.append(float(cache.get(DISK_FULL_CACHE_KEY) or 0.0))
    except Exception:  # the cache cannot say: this process's own memory still can
        pass
    age = time.time() - max(times)
    return age if age <= DISK_FULL_REMEMBERED else None


def give_up_after() -> float:
    """How long a worker keeps a job through an outage, counted from its last write that
    went through: the grace, but never past the point where the stall sweep could take the
    job (two heartbeats before the stall threshold)."""
    return max(0.0, min(settings.JOBADMIN_DB_OUTAGE_GRACE, _stall_cap()))


def _stall_cap() -> float:
    """Two heartbeats before the stall threshold: the latest a worker may hold a job it cannot write for."""
    return float(settings.JOBADMIN_STALL_THRESHOLD - 2 * settings.JOBADMIN_HEARTBEAT_INTERVAL)


def drop_connection() -> None:
    """Forget this thread's broken connection: the next query connects afresh."""
    try:
        connection.close()
    except DatabaseError:
        pass


def database_reachable() -> bool:
    """Whether a query goes through now (on this thread's connection, reconnecting if need be)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        if not is_outage(exc):
            raise
        drop_connection()
        return False
    return True


def check_grace(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A system check: the grace must fit below the stall threshold, or it is cut short."""
    cap = _stall_cap()
    if settings.JOBADMIN_DB_OUTAGE_GRACE <= cap:
        return []
    return [
        Warning(
            f"JOBADMIN_DB_OUTAGE_GRACE ({settings.JOBADMIN_DB_OUTAGE_GRACE:g} s) is longer than "
            f"JOBADMIN_STALL_THRESHOLD minus two heartbeats ({cap:g} s): workers give a job up "
            f"after {max(cap, 0):g} s of outage, before the stall sweep could take it.",
            hint="Raise JOBADMIN_STALL_THRESHOLD, or lower JOBADMIN_DB_OUTAGE_GRACE.",
            id="jobs.W001",
        )
    ]
