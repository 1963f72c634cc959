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
    (``query_timeout()`` when it is None); the connection is closed when one does not."""

    deadline: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # the caller's own bound (LISTEN's notifies, a cancel)
            return super().wait(gen, interval=interval, timeout=timeout)
        bound = self.deadline if self.deadline is not None else query_timeout()
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except _WaitTimeout:
            # What the server got of the exchange is unknown: this connection cannot be
            # used again. Closing it also tells a healthy server, and the pool, at once.
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {bound:g} s (JOBADMIN_DB_QUERY_TIMEOUT); connection closed"
            ) from None


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
            if not self._pool.get_stats().get("connections_errors"):
                return self._pool.getconn(timeout=max(0.0, total - FIRST_WAIT))  # busy, not broken
        self._wrapper.database_answers()  # raises OperationalError while it is away
        # Back: a fresh pool connects at once, whatever back-off the old one is in.
        self._wrapper.close_pool()
        fresh = self._wrapper.pool
        fresh.open()
        return fresh.getconn(timeout=max(0.0, total - FIRST_WAIT))


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

    def database_answers(self) -> None:
        """Connect once, outside the pool; raise (``OperationalError``) if the database is away.
        A database that is there but full (``too many connections``) counts as there: the
        caller waits for the pool."""
        params = self.get_connection_params()
        for django_only in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(django_only, None)
        try:
            BoundedConnection.connect(**params, autocommit=True).close()
        except psycopg.OperationalError as exc:
            if "too many" in str(exc) or "remaining connection slots" in str(exc):
                return
            raise

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        given = self.settings_dict["OPTIONS"]
        for name, value in bounded_options(query_timeout()).items():
            if name not in given:  # what DATABASES' OPTIONS say wins
                params[name] = value
        return params
