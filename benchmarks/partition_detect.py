"""Which connection settings end a read blocked on a black-holed link (issue 21)?

A psycopg connection to PostgreSQL through ``tests.deploy.blackhole.BlackHoleProxy``; the
proxy is cut, and the connection sends ``SELECT 1``. For each setting the script prints how
long the query waited before it failed, or that it was still blocked after ``--limit``
seconds; the baseline is a connection with none of them. Then the same for a new connection
opened through the cut link (``connect_timeout``).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/partition_detect.py --limit 12

It needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg

from jobadmin.db.base import BoundedConnection
from tests.deploy.blackhole import BlackHoleProxy


def trial(proxy: BlackHoleProxy, user: str, dbname: str, limit: float, *, bounded: float | None, **kwargs: Any) -> str:
    cls = BoundedConnection if bounded is not None else psycopg.Connection
    conn = cls.connect(host="127.0.0.1", port=proxy.port, user=user, dbname=dbname, autocommit=True, **kwargs)
    if bounded is not None:
        conn.deadline = bounded  # type: ignore[attr-defined]
    conn.execute("SELECT 1")
    proxy.cut()
    out: dict[str, str] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            conn.execute("SELECT 1")
            out["r"] = f"answered after {time.monotonic() - started:.1f} s"
        except Exception as exc:
            out["r"] = f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    proxy.heal()
    return out.get("r", f"still blocked after {limit:g} s")


def connect_trial(proxy: BlackHoleProxy, user: str, dbname: str, limit: float, timeout: int) -> str:
    proxy.cut()
    out: dict[str, str] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            psycopg.connect(host="127.0.0.1", port=proxy.port, user=user, dbname=dbname, connect_timeout=timeout)
            out["r"] = "connected"
        except Exception as exc:
            out["r"] = f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    proxy.heal()
    return out.get("r", f"still connecting after {limit:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=12.0, help="seconds to wait for a blocked query")
    args = parser.parse_args()
    url = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    user, dbname = url.username or "postgres", url.path.lstrip("/") or "postgres"
    proxy = BlackHoleProxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    rows = [
        ("baseline: no option", {"bounded": None}),
        ("keepalives 1 s idle, 1 s interval, 3 probes", {"bounded": None, "keepalives": 1, "keepalives_idle": 1,
                                                         "keepalives_interval": 1, "keepalives_count": 3}),
        ("tcp_user_timeout=3000 ms", {"bounded": None, "tcp_user_timeout": 3000}),
        ("statement_timeout=2 s (options)", {"bounded": None, "options": "-c statement_timeout=2000"}),
        ("BoundedConnection, 3 s (Connection.wait time-out)", {"bounded": 3.0}),
    ]  # fmt: skip
    print(f"{'setting':52s} SELECT 1 on a black-holed link")
    for name, kwargs in rows:
        bounded = kwargs.pop("bounded")
        print(f"{name:52s} {trial(proxy, user, dbname, args.limit, bounded=bounded, **kwargs)}", flush=True)
    print(f"{'new connection, connect_timeout=2':52s} {connect_trial(proxy, user, dbname, args.limit, 2)}")
    proxy.stop()


if __name__ == "__main__":
    main()
