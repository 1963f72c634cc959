"""Exactly one monitor: a lease row with an expiry and a fencing term on PostgreSQL, a file
lock on the embedded default.

**PostgreSQL.** The lease is the row ``MonitorLease("monitor")``: its holder, its ``term``
and ``expires_at`` on the database's clock. A standby takes it only once it has run out
(one statement: the row's term grows by one), so it takes over within the lease whether
the leader died or is only cut off: a leader behind a silent link, whose session the
server still sees, holds nothing once its lease has run out. (A session advisory lock
was held as long as the server saw the leader's session, which a hung proxy kept open:
the standby never took over.)

The leader renews the row every ``lease / 5`` seconds on a connection of its own, whose
every wait is bounded (``jobadmin.db.base.BoundedConnection``). It is *sure* for
``0.6 * lease`` after sending its last successful renewal, on its own monotonic clock,
and checks ``sure()`` before every duty: the row the renewal wrote runs out ``lease``
after the server read it, later still, so the old leader has stopped before a standby can
take over (both clocks run at the same rate). A watchdog thread, apart from the renewal
that may be stuck, ends the process (``os._exit``) when a duty still runs ``0.8 *
lease`` after the last renewal; its supervisor restarts it as a standby.

The writes of a duty are fenced: the monitor runs each duty in one transaction that,
before it commits, reads the row ``FOR SHARE`` with this leader's term, unexpired
(``Lease.fence``). A deposed leader's late writes are rolled back; a takeover waits for a
duty that passed the check to commit (the share lock), and the server ends a session cut
off in between (``idle_in_transaction_session_timeout``).

A standby (and a leader that lost its lease) waits through every error: it reconnects
and tries again every ``poll`` seconds until it leads or is told to stop. A leader that
stops cleanly gives the lease back at once.

**SQLite** (one machine): an ``flock`` on a file in the data folder, released by the
kernel only when its process is gone, so it cannot be lost while the monitor runs.

The leader writes who it is (host, pid) where ``/api/health/`` reads it: on PostgreSQL
the lease row, on SQLite the lock file.
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

from jobadmin.db.base import BoundedConnection
from monitoring.health import MONITOR_APPLICATION_NAME, MONITOR_LEASE_NAME

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


class Deposed(Exception):
    """This monitor's term is no longer the lease's: what it was writing is rolled back."""


_TABLE = "monitoring_monitorlease"


class LeaseConnection(BoundedConnection):
    """The lease's own connection: its bound is its own (a renewal later than the lease's
    sure time is worthless), not ``JOBADMIN_DB_QUERY_TIMEOUT``."""


class Lease:
    """Leadership of the monitor. ``acquire`` waits until this process leads; ``sure`` says
    whether it may still act as the leader; ``fence`` refuses a deposed leader's writes;
    ``release`` gives the lead up."""

    def __init__(
        self, *, lease: float | None = None, poll: float | None = None, log: Log | None = None, holder: str = ""
    ) -> None:
        self.lease = lease if lease is not None else lease_seconds()
        self.holder = holder or identity()  # "host pid", as health names the leader
        # A standby looks this often: a takeover comes at most this long after the lease ran out.
        self.poll = poll if poll is not None else min(1.0, self.lease / 5)
        self.log: Log = log or sys.stderr
        self.term = 0
        self._conn: Any = None
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        self._sure_until = 0.0  # monotonic
        self._renewer: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._leading = False  # between acquire and release, as the main thread sees it
        self._in_duty = False
        self._closing = threading.Event()

    # --- what the monitor loop asks -------------------------------------------------------
    def sure(self) -> bool:
        """True while this process may act as the leader (always False before ``acquire``)."""
        with self._lock:
            return self._leading and time.monotonic() < self._sure_until

    def lost(self) -> bool:
        """True once a leader can no longer be sure (it must stop and wait again)."""
        return self._leading and not self.sure()

    def duty(self, running: bool) -> None:
        """The monitor marks the time it spends inside a duty (the watchdog's business)."""
        self._in_duty = running

    def fenced(self) -> bool:
        """Whether duties must ``fence`` their writes (PostgreSQL; the file lock needs none)."""
        return connection.vendor == "postgresql"

    def fence(self) -> None:
        """Inside a duty's transaction, last before its commit, on Django's connection: raise
        ``Deposed`` (the transaction rolls back) unless the lease still carries this leader's
        term, unexpired. The row stays share-locked to the commit, so a takeover cannot slip
        in between."""
        if not self.fenced():
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {_TABLE} WHERE name = %s AND term = %s AND expires_at > clock_timestamp() FOR SHARE",
                [MONITOR_LEASE_NAME, self.term],
            )
            if cursor.fetchone() is None:
                with self._lock:
                    self._sure_until = 0.0
                raise Deposed(f"the lease is no longer term {self.term}: this monitor's writes are refused")

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
                self.log.write(f"monitor: waiting for the lease: {exc.__class__.__name__}: {exc}".strip() + "\n")
                got = False
            if got:
                with self._lock:
                    self._leading = True
                if vendor == "postgresql":
                    self._start_threads()
                return True
            time.sleep(self.poll)

    def release(self) -> None:
        """Stop leading: stop renewing, give the lease back (a standby takes it at once), forget."""
        with self._lock:
            was_leading = self._leading
            self._leading = False
            self._sure_until = 0.0
        self._closing.set()
        for thread in (self._renewer, self._watchdog):
            if thread is not None:
                thread.join(timeout=self.lease)
        self._renewer = self._watchdog = None
        self._closing.clear()
        if was_leading and self._conn is not None:
            try:
                self._conn.execute(
                    f"UPDATE {_TABLE} SET holder = '', expires_at = clock_timestamp() WHERE name = %s AND term = %s",
                    [MONITOR_LEASE_NAME, self.term],
                )
            except Exception as exc:  # it runs out on its own
                logger.debug("monitor: giving the lease back: %r", exc)
        self._close_connection()
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    # --- PostgreSQL -------------------------------------------------------------------------
    def _connect(self) -> Any:
        # Django's parameters (DATABASE_URL's host, user, sslmode, keepalives, ...) without
        # what only its cursors use.
        params: dict[str, Any] = connection.get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        params.update(
            {
                "application_name": f"{MONITOR_APPLICATION_NAME} {self.holder}",
                "connect_timeout": max(1, int(self.lease * RENEW_EVERY)),
                "autocommit": True,
            }
        )
        # A renewal that answers later than this could not keep the leader sure anyway.
        conn = LeaseConnection.connect(**params)
        conn.deadline = max(0.2, self.lease * SURE_FOR)
        return conn

    def _try_postgresql(self) -> bool:
        if self._conn is None:
            self._conn = self._connect()
        sent = time.monotonic()
        # Free (never taken, given back, or run out on the database's clock), or this very
        # process's from before a blip: taken with the next term.
        row = self._conn.execute(
            f"INSERT INTO {_TABLE} (name, holder, term, acquired_at, renewed_at, expires_at)"
            " VALUES (%(name)s, %(me)s, 1, clock_timestamp(), clock_timestamp(),"
            " clock_timestamp() + make_interval(secs => %(lease)s))"
            f" ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, term = {_TABLE}.term + 1,"
            " acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at"
            f" WHERE {_TABLE}.expires_at IS NULL OR {_TABLE}.expires_at <= clock_timestamp()"
            f" OR {_TABLE}.holder = EXCLUDED.holder"
            " RETURNING term",
            {"name": MONITOR_LEASE_NAME, "me": self.holder, "lease": self.lease},
        ).fetchone()
        if not row:
            return False
        with self._lock:
            self.term = int(row[0])
            self._sure_until = sent + SURE_FOR * self.lease
        return True

    def _renew(self) -> bool:
        """One renewal; True if the row still carries this term (and now runs out a lease from now)."""
        if self._conn is None:
            self._conn = self._connect()
        row = self._conn.execute(
            f"UPDATE {_TABLE} SET renewed_at = clock_timestamp(),"
            " expires_at = clock_timestamp() + make_interval(secs => %s)"
            " WHERE name = %s AND term = %s AND expires_at > clock_timestamp() RETURNING term",
            [self.lease, MONITOR_LEASE_NAME, self.term],
        ).fetchone()
        return row is not None

    def _start_threads(self) -> None:
        self._closing.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="monitor-lease", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="monitor-watchdog", daemon=True)
        self._renewer.start()
        self._watchdog.start()

    def _renew_loop(self) -> None:
        """Renew every ``RENEW_EVERY * lease``; through errors until the leader is no longer sure."""
        every = RENEW_EVERY * self.lease
        failing = False
        while not self._closing.wait(every):
            sent = time.monotonic()
            try:
                renewed = self._renew()
            except Exception as exc:
                self._close_connection()  # reconnect at the next try
                if not failing:
                    self.log.write(f"monitor: renewing the lease failed ({exc.__class__.__name__}: {exc})\n")
                failing = True
                if not self.sure():
                    self.log.write("monitor: lease lost; standing down\n")
                    return
                continue
            if not renewed:
                self.log.write(f"monitor: the lease is no longer term {self.term}; standing down\n")
                with self._lock:
                    self._sure_until = 0.0
                return
            failing = False
            with self._lock:
                if self._leading:
                    self._sure_until = max(self._sure_until, sent + SURE_FOR * self.lease)

    def _watch(self) -> None:
        """A duty still running ``EXIT_AFTER - SURE_FOR`` of the lease after the leader stopped
        being sure ends with the process: no two monitors act, even if this one is stuck."""
        margin = (EXIT_AFTER - SURE_FOR) * self.lease
        while not self._closing.wait(min(0.05, self.lease / 50)):
            with self._lock:
                late = self._leading and time.monotonic() >= self._sure_until + margin
            if late and self._in_duty and not self._closing.is_set():
                self.log.write("monitor: a duty outlived the lease; exiting so that no two monitors act\n")
                self.log.flush()
                os._exit(75)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                logger.debug("monitor: closing the lease connection: %r", exc)

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
            self._sure_until = float("inf")
        return True
