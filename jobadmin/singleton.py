"""Exactly one monitor: a PostgreSQL advisory lock, or a file lock on the embedded default."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

LOCK_KEY = 0x4A0B_AD31  # an arbitrary constant shared by every monitor process


@contextmanager
def monitor_lock(*, wait: Callable[[], bool], poll: float = 1.0) -> Iterator[bool]:
    """Hold the monitor lock while the block runs; yields False if ``wait`` gave up first."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                if cursor.fetchone()[0]:
                    break
                if not wait():
                    yield False
                    return
                time.sleep(poll)
            try:
                yield True
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return
    path = settings.DATA_DIR / "monitor.lock"
    with open(path, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait():
                    yield False
                    return
                time.sleep(poll)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
