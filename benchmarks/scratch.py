"""Scratch configurations for the benchmarks: a child process on a scratch SQLite file, or on
a scratch PostgreSQL database (created and dropped) with Redis (its keys deleted afterwards)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


def base_env(tag: str, data_dir: str) -> dict[str, str]:
    """The child's environment: the benchmarks' settings, its own data folder, prefix and cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
        JOBADMIN_DATA_DIR=data_dir,
        REDIS_PREFIX=tag,
        Q_CLUSTER_NAME=tag,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def sqlite_env(tag: str) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="jobadmin-bench-") as data_dir:
        yield base_env(tag, data_dir)


@contextmanager
def services_env(tag: str) -> Iterator[dict[str, str]]:
    """``DATABASE_URL``'s server with a scratch database, and ``REDIS_URL``."""
    import psycopg
    import redis

    parts = urlsplit(os.environ["DATABASE_URL"])
    scratch = tag.replace("-", "_")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        with tempfile.TemporaryDirectory(prefix="jobadmin-bench-") as data_dir:
            env = base_env(tag, data_dir)
            env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{scratch}"))
            env["REDIS_URL"] = os.environ["REDIS_URL"]
            yield env
    finally:
        for key in client.scan_iter(match=f"*{tag}*", count=1000):
            client.delete(key)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def each_configuration(
    only: str | None, run: Callable[[dict[str, str]], dict[str, object]], report: Callable[[str, dict], None]
) -> None:
    """Run a benchmark's child on the embedded default, then on PostgreSQL + Redis when
    ``DATABASE_URL`` and ``REDIS_URL`` are set (``only``: ``sqlite`` or ``services``), and report each."""
    tag = f"jobadmin-bench-{os.getpid()}"
    if only != "services":
        with sqlite_env(tag) as env:
            report("SQLite (WAL) + ORM broker", run(env))
    if only != "sqlite":
        if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
            with services_env(tag) as env:
                report("PostgreSQL + Redis broker", run(env))
        else:
            print("\nPostgreSQL + Redis: skipped (set DATABASE_URL and REDIS_URL)")
