"""Fixtures of the fault tests: a redis-server of the test's own, which the test may stop, and
a hand on this run's own PostgreSQL test database, which the test may close to everyone but
itself (never the shared server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from tests.conftest import REQUIRE_SERVICES, free_port, wait_for


class OwnRedis:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, cwd=self.tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0, timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is required in this run")
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_on_own_redis(own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch) -> OwnRedis:
    """This process's django-q2 broker is the test's own Redis (which the test may stop)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", own_redis.url)
    return own_redis


class DatabaseBlock:
    """Closes this run's test database to every session but the test's own, and opens it again.

    ``ALLOW_CONNECTIONS false`` refuses new connections and ``pg_terminate_backend`` ends
    the open ones: to the workers and monitors the tests start, the database is out.
    """

    def __init__(self, admin: psycopg.Connection[Any]) -> None:
        self.admin = admin
        self.name = str(connection.settings_dict["NAME"])

    def close(self) -> None:
        connection.ensure_connection()
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            [self.name, connection.connection.info.backend_pid],
        )

    def open(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def pg_admin() -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server's maintenance database, to break this run's database."""
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL is required in this run")
        pytest.skip("breaks a PostgreSQL database of its own (CI sets DATABASE_URL)")
    conf = connection.settings_dict
    params = {"host": conf["HOST"], "port": conf["PORT"], "user": conf["USER"], "password": conf["PASSWORD"]}
    conn = psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in params.items() if v})
    try:
        yield conn
    finally:
        conn.execute(f'ALTER DATABASE "{conf["NAME"]}" ALLOW_CONNECTIONS true')
        conn.close()


@pytest.fixture
def database_block(pg_admin: psycopg.Connection[Any]) -> DatabaseBlock:
    return DatabaseBlock(pg_admin)
