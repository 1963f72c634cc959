"""Exactly one monitor: a lease on a PostgreSQL advisory lock, or a file lock on the embedded default.

**PostgreSQL.** The lock is a session advisory lock held on a connection of its own, which
the lease opens and never hands to anything else (Django's connection is replaced after
an error, and a lock that lived on it was silently lost: twice two monitors ran at once).
A thread renews the lease: every ``lease / 5`` seconds it runs a query on that connection;
the answer proves that the session, and so the lock, was alive when the query was sent.

The leader is *sure* for ``0.6 * lease`` after the start of its last successful renewal
and checks ``sure()`` before every duty; a standby that takes the lock starts its duties
only ``lease`` seconds later. The lock is free only after the old session ended, which is
after its last successful renewal was sent, so the old leader has stopped before the new
one starts (both measure on monotonic clocks, which run at the same rate). A duty still
running when the old leader's lease runs out (``0.8 * lease``) is not waited for: the
process exits (``os._exit``), and its supervisor restarts it as a standby. The sessions
ask the server to notice a vanished client within seconds (TCP keepalives), so a leader
on a machine that died frees the lock soon.

A standby (and a leader that lost its lease) waits through every error: it reconnects
and tries again every ``poll`` seconds until it leads or is told to stop.

**SQLite** (one machine): an ``flock`` on a file in the data folder, released by the
kernel only when its process is gone, so it cannot be lost while the monitor runs.

The leader writes who it is (host, pid) where ``/api/health/`` reads it: on PostgreSQL
the lock session's ``application_name`` (health reads ``pg_locks``), on SQLite the lock file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from django.conf import settings
from django.db import connection

from monitoring.health import MONITOR_APPLICATION_NAME, MONITOR_LOCK_KEY

logger = logging.getLogger(__name__)

SURE_FOR = 0.6  # of the lease: how long a renewal keeps the leader sure
EXIT_AFTER = 0.8  # of the lease: a duty still running then is cut short by exiting
RENEW_EVERY = 0.2  # of the lease


class Log(Protocol):
    def write(self, text: str) -> Any: ...

    def flush(self) -> Any: ...


def lease_seconds() -> float:
    return float(settings.JOBADMIN_MONITOR_LEASE)


def identity() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


class Lease:
    """Leadership of the monitor. ``acquire`` waits until this process leads; ``sure`` says
    whether it may still act as the leader; ``release`` gives the lead up."""

    def __init__(self, *, lease: float | None = None, poll: float = 1.0, log: Log | None = None) -> None:
        self.lease = lease if lease is not None else lease_seconds()
        self.poll = poll
        self.log: Log = log or sys.stderr
        self._conn: Any = None
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        self._sure_until = 0.0  # monotonic
        self._start_at = 0.0  # monotonic: the fence a new leader waits for
        self._renewer: threading.Thread | None = None
        self._leading = False  # between acquire and release, as the main thread sees it
        self._in_duty = False
        self._closing = threading.Event()

    # --- what the monitor loop asks -------------------------------------------------------
    def sure(self) -> bool:
        """True while this process may act as the leader (always False before ``acquire``)."""
        now = time.monotonic()
        with self._lock:
            return self._leading and self._start_at <= now < self._sure_until

    def lost(self) -> bool:
        """True once a leader can no longer be sure (it must stop and wait again)."""
        return self._leading and time.monotonic() >= self._start_at and not self.sure()

    def duty(self, running: bool) -> None:
        """The monitor marks the time it spends inside a duty (the watchdog's business)."""
        self._in_duty = running

    def acquire(self, *, wait: Callable[[], bool]) -> bool:
        """Block until this process leads; False if ``wait()`` said to give up first."""
        vendor = connection.vendor
        while True:
            if not wait():  # told to stop (also right after a release: do not lead again)
                return False
            try:
                got = self._try_postgresql() if vendor == "postgresql" else self._try_file()
            except Exception as exc:  # the database is away: a standby waits through it
                self._close_connection()
                self.log.write(f"monitor: waiting for the lock: {exc.__class__.__name__}: {exc}".strip() + "\n")
                got = False
            if got:
                self._leading = True
                if vendor == "postgresql":
                    self._start_renewer()
                    # The fence: the previous leader's lease runs out before this one acts.
                    while time.monotonic() < self._start_at:
                        if not wait():
                            self.release()
                            return False
                        if not self._renewer_alive():
                            break
                        time.sleep(min(0.05, self.lease / 20))
                    if not self.sure():
                        self.release()  # lost the session while waiting: start over
                        continue
                return True
            time.sleep(self.poll)

    def release(self) -> None:
        """Stop leading: stop renewing, unlock (close the session), forget."""
        with self._lock:
            self._leading = False
            self._sure_until = 0.0
        self._closing.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.lease)
            self._renewer = None
        self._closing.clear()
        self._close_connection()
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    # --- PostgreSQL -------------------------------------------------------------------------
    def _connect(self) -> Any:
        import psycopg

        # Django's own parameters (DATABASE_URL's host, user, sslmode, ...) without what only
        # its cursors use.
        params: dict[str, Any] = connection.get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        params.update(
            {
                "application_name": f"{MONITOR_APPLICATION_NAME} {identity()}",
                "connect_timeout": max(1, int(self.lease / 2)),
                "autocommit": True,
                # The client notices a dead server, and (the server settings below) the
                # server notices a dead client, within seconds rather than hours.
                "keepalives": 1,
                "keepalives_idle": 2,
                "keepalives_interval": 1,
                "keepalives_count": 3,
            }
        )
        conn = psycopg.connect(**params)
        # A renewal that answers later than this could not make the leader sure anyway.
        timeout_ms = max(100, int(1000 * self.lease * SURE_FOR))
        conn.execute(f"SET statement_timeout = {timeout_ms}")
        conn.execute("SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3")
        return conn

    def _try_postgresql(self) -> bool:
        if self._conn is None:
            self._conn = self._connect()
        sent = time.monotonic()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [MONITOR_LOCK_KEY]).fetchone()
        if not row or not row[0]:
            return False
        with self._lock:
            self._sure_until = sent + SURE_FOR * self.lease
            self._start_at = time.monotonic() + self.lease
        return True

    def _start_renewer(self) -> None:
        self._closing.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="monitor-lease", daemon=True)
        self._renewer.start()

    def _renewer_alive(self) -> bool:
        return self._renewer is not None and self._renewer.is_alive()

    def _renew_loop(self) -> None:
        conn = self._conn
        every = RENEW_EVERY * self.lease
        while not self._closing.wait(every):
            sent = time.monotonic()
            try:
                conn.execute("SELECT 1").fetchone()
            except Exception as exc:
                self.log.write(f"monitor: lease lost ({exc.__class__.__name__}); standing down\n")
                with self._lock:
                    deadline = self._sure_until
                    self._sure_until = 0.0
                self._watchdog(deadline + (EXIT_AFTER - SURE_FOR) * self.lease)
                return
            with self._lock:
                if self._leading:
                    self._sure_until = max(self._sure_until, sent + SURE_FOR * self.lease)

    def _watchdog(self, deadline: float) -> None:
        """After the lease is lost: a duty still running at ``deadline`` ends with the process."""
        while time.monotonic() < deadline:
            if not self._in_duty or self._closing.is_set():
                return
            time.sleep(0.01)
        if self._in_duty and not self._closing.is_set():
            self.log.write("monitor: a duty outlived the lost lease; exiting so that no two monitors act\n")
            self.log.flush()
            os._exit(75)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                logger.debug("monitor: closing the lock connection: %r", exc)

    # --- SQLite: a file lock ------------------------------------------------------------------
    def _try_file(self) -> bool:
        handle = open(settings.JOBADMIN_DATA_DIR / "monitor.lock", "a+")  # noqa: SIM115 - kept while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        host, pid = identity().rsplit(" ", 1)
        handle.write(json.dumps({"host": host, "pid": int(pid), "since": time.time()}))
        handle.flush()
        self._file = handle
        with self._lock:
            self._start_at = 0.0
            self._sure_until = float("inf")
        return True
