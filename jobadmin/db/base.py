"""Django's PostgreSQL backend, with every wait for the server bounded (issue 21).

A link that goes silent (a hung proxy or pooler, a partition) sends no reset: a query, a
``COMMIT`` or a health check then waits in a socket read for as long as the link stays
dead. Measured through a black-holing proxy (``benchmarks/partition_detect.py``):
TCP keepalives, ``tcp_user_timeout`` and a server-side ``statement_timeout`` all leave
the read blocked, because the proxy's kernel ACKs every byte and the server never sees the
query; only a client-side bound ends it. So each connection here is a
``BoundedConnection``: a wait for the server that lasts longer than
``JOBADMIN_DB_QUERY_TIMEOUT`` seconds closes the connection and raises
``OperationalError``, which every caller already treats as a database outage
(``jobs.outage.is_outage``; the web process answers 503). The pool of a web process lends
the same class.

On top of it, what does serve on a link that really drops packets, and on the server's
side: TCP keepalives and ``tcp_user_timeout`` (the client notices a peer that stopped
ACKing), and the server's ``idle_in_transaction_session_timeout`` (a client cut off inside
a transaction does not hold its row locks for longer than the bound: the stall sweep and
the next claim can take them).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

# psycopg raises this (a subclass of OperationalError) when a ``Connection.wait`` with a
# time-out expires; it is private, so reached by name.
_WaitTimeout: type[Exception] = getattr(psycopg.errors, "_WaitTimeout", psycopg.errors.OperationalError)


def query_timeout() -> float | None:
    """The bound on one wait for the server, seconds; None: unbounded."""
    value = float(settings.JOBADMIN_DB_QUERY_TIMEOUT or 0)
    return value if value > 0 else None


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits for the server end within ``deadline`` seconds
    (``query_timeout()`` when it is None, unbounded when 0); the connection is closed when
    one does not."""

    deadline: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # the caller's own bound (LISTEN's notifies, a cancel)
            return super().wait(gen, interval=interval, timeout=timeout)
        bound = self.deadline if self.deadline is not None else query_timeout()
        if not bound:
            return super().wait(gen, interval=interval)
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except _WaitTimeout:
            # What the server got of the exchange is unknown: this connection cannot be
            # used again. Closing it also tells a healthy server, and the pool, at once.
            self.close()
            error = f"the database did not answer within {bound:g} s (JOBADMIN_DB_QUERY_TIMEOUT); connection closed"
            note_failure(error, refused=False)
            raise psycopg.OperationalError(error) from None


def bounded_options(timeout: float | None) -> dict[str, Any]:
    """libpq parameters of a connection that notices a dead peer (and the server a dead client)."""
    params: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    if timeout is not None:
        ms = max(1, int(timeout * 1000))
        params["tcp_user_timeout"] = ms
        params["options"] = f"-c idle_in_transaction_session_timeout={ms}"
    return params


class _Psycopg:
    """psycopg as Django's backend sees it (``DatabaseWrapper.Database``: its error classes,
    and ``connect``), except that ``connect`` opens a ``BoundedConnection``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)

    @staticmethod
    def connect(**params: Any) -> BoundedConnection:
        return BoundedConnection.connect(**params)


# How long a request waits for a pooled connection before it asks the database itself
# whether it is there (``FailFastPool``).
FIRST_WAIT = 0.5


class FailFastPool:
    """A web process's pool as Django's backend uses it, which neither keeps requests waiting
    while the database is away nor stays away after it is back.

    psycopg_pool lends a connection within its ``timeout`` (10 s), and after failing to
    connect it tries again with an exponential back-off (1, 2, 4, 8 s, ...): during an
    outage every request waited the whole ``timeout`` for its 503, and after it the pool
    took up to 21 s to connect again (issue 21). Here a request that gets no connection
    within ``FIRST_WAIT``, from a pool that failed to connect since it was made, connects to
    the database directly: refused, it fails at once (503); answered, the pool, which may
    still be backing off, is replaced by a fresh one that connects now. A pool that only
    is busy (no connection errors) is waited for as before.
    """

    def __init__(self, wrapper: DatabaseWrapper, pool: Any) -> None:
        self._wrapper = wrapper
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def __bool__(self) -> bool:
        return True

    def getconn(self, timeout: float | None = None) -> Any:
        from psycopg_pool import PoolTimeout

        total = self._pool.timeout if timeout is None else timeout
        try:
            return self._pool.getconn(timeout=min(FIRST_WAIT, total))
        except PoolTimeout:
            rest = max(0.0, total - FIRST_WAIT)
            if not self._pool.get_stats().get("connections_errors"):
                return self._pool.getconn(timeout=rest)  # busy, not broken
        # Raises OperationalError while the database is away; False while it is full (the
        # connections the pool may still make are someone else's: wait for one of ours).
        if not self._wrapper.database_has_room():
            return self._pool.getconn(timeout=rest)
        # Back: a fresh pool connects at once, whatever back-off the old one is in.
        self._wrapper.close_pool()
        fresh = self._wrapper.pool
        fresh.open()
        return fresh.getconn(timeout=rest)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Psycopg()  # type: ignore[assignment]  # psycopg itself, but for connect

    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]
        if options and self.alias not in pools:
            options = {} if options is True else options
            options.setdefault("connection_class", BoundedConnection)
            self.settings_dict["OPTIONS"]["pool"] = options
        pool = super().pool
        return FailFastPool(self, pool) if pool is not None else None

    def close_pool(self) -> None:
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]
        pool = pools.pop(self.alias, None)
        if pool is not None:
            pool.close(timeout=0)

    def database_has_room(self) -> bool:
        """Connect once, outside the pool: True if that works, False if the database refuses
        for want of connections (``too many connections``); raises ``OperationalError`` if
        it is away."""
        params = self.get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        try:
            BoundedConnection.connect(**params, autocommit=True).close()
        except psycopg.OperationalError as exc:
            if refused_for_connections(exc):
                return False
            raise
        return True

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            conn = super().get_new_connection(conn_params)
        except psycopg.OperationalError as exc:
            note_failure(str(exc), refused=refused_for_connections(exc))
            raise
        if self.alias == NO_DB_ALIAS and isinstance(conn, BoundedConnection):
            conn.deadline = 0.0  # the maintenance connection: CREATE / DROP DATABASE take their time
        return conn


def note_failure(error: str, *, refused: bool) -> None:
    """A worker's or the monitor's connection failed: health names the process (a web
    process's failures are its 503s)."""
    from jobadmin import process
    from jobs.outage import note_database_failure

    if process.kind != "web":
        note_database_failure(error, refused=refused)


def refused_for_connections(exc: BaseException) -> bool:
    """The server refused a connection because a connection limit (the server's, the role's
    or the database's) is reached."""
    text = str(exc)
    return "too many connections" in text or "remaining connection slots" in text
