"""Connections budgeted (issue 21, items 3 and 5): under a role's connection limit every job
still runs, and a worker the database refuses says so in health.

Real ``qcluster``, ``monitor`` and ``daphne`` processes that connect as a role of the test's
own (``CREATE ROLE ... CONNECTION LIMIT n`` on the shared server, dropped after), on this
run's own test database.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from jobs import services
from jobs.models import Job, JobStatus
from monitoring.health import CRITICAL, check_workers
from tests.conftest import Processes, grant, wait_for
from tests.live.test_live_e2e import start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture
def limited_role(pg_admin: psycopg.Connection[Any]) -> Iterator[Callable[[int], str]]:
    """``make(limit)``: a login role limited to ``limit`` connections that may use this run's
    database; the DATABASE_URL that connects as it."""
    name = f"jobadmin_{os.environ['JOBADMIN_TEST_RUN']}_limited".lower()
    conf = connection.settings_dict

    def make(limit: int) -> str:
        pg_admin.execute(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT {int(limit)}')
        with connection.cursor() as cursor:
            for grant_sql in (
                f'GRANT ALL ON SCHEMA public TO "{name}"',
                f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"',
                f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{name}"',
            ):
                cursor.execute(grant_sql)
        return f"postgres://{name}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"

    try:
        yield make
    finally:
        exists = pg_admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
        if exists:
            pg_admin.execute(f'ALTER ROLE "{name}" CONNECTION LIMIT 0')
            pg_admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
            with connection.cursor() as cursor:
                cursor.execute(f'DROP OWNED BY "{name}"')
            pg_admin.execute(f'DROP ROLE "{name}"')


def role_connections(url: str) -> int:
    role = url.split("//", 1)[1].split("@", 1)[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [role])
        return int(cursor.fetchone()[0])


@pytest.mark.usefixtures("requires_redis")
def test_a_worker_the_database_refuses_for_want_of_connections_makes_health_critical(
    processes: Processes, limited_role: Callable[[int], str]
) -> None:
    url = limited_role(0)
    processes.qcluster(DATABASE_URL=url)
    services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})

    def refused() -> dict[str, Any] | None:
        check = check_workers()
        return check if check.get("refused_connections") else None

    check = wait_for(refused, timeout=30, message="health never said that workers are refused")
    assert check["status"] == CRITICAL
    assert "too many connections" in check["reason"]
    assert any(who.startswith("qcluster ") for who in check["refused_connections"])


@pytest.mark.usefixtures("requires_redis")
def test_under_a_role_limit_of_12_a_burst_of_enqueues_leaves_the_workers_their_connections_and_every_job_runs(
    processes: Processes, limited_role: Callable[[int], str], user: Any
) -> None:
    from rest_framework.authtoken.models import Token

    url = limited_role(12)
    grant(user, "jobs.view_job")
    token = Token.objects.create(user=user).key
    env = {"DATABASE_URL": url, "JOBADMIN_DB_POOL_MAX_IDLE": "2"}
    processes.qcluster(**env)
    processes.start("manage.py", "monitor", env=_env(env), name="monitor")
    port = start_daphne(processes, **env)

    def enqueue() -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/jobs/",
            data=json.dumps({"type": "demo", "params": {"items": 2, "delay_ms": 10}}).encode(),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            method="POST",
        )
        for _ in range(5):  # a 503 (no connection in time) is the client's to retry
            try:
                with urllib.request.urlopen(request, timeout=30):
                    return
            except urllib.error.HTTPError as exc:
                if exc.code != 503:
                    raise
                time.sleep(1)

    burst = [threading.Thread(target=enqueue) for _ in range(40)]
    for thread in burst:
        thread.start()
    for thread in burst:
        thread.join(60)
    peak = role_connections(url)
    assert Job.objects.count() == 40

    def all_done() -> bool:
        return not Job.objects.exclude(status=JobStatus.COMPLETED).exists()

    wait_for(all_done, timeout=90, message="jobs stayed queued under the connection limit")
    print(f"role connections after the burst: {peak}; at the end: {role_connections(url)} (limit 12)")


def _env(extra: dict[str, str]) -> dict[str, str]:
    from tests.conftest import child_env

    return child_env(**extra)


def test_health_warns_when_the_tightest_connection_limit_is_nearly_used(pg_admin: psycopg.Connection[Any]) -> None:
    from monitoring.health import WARNING, check_database

    name = connection.settings_dict["NAME"]
    before = check_database()
    assert before["status"] == "healthy", before
    assert 1 <= before["connections"] <= before["connection_limit"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        in_use = int(cursor.fetchone()[0])
    # This database may take no more than are open now (superusers, as the tests connect, are exempt).
    pg_admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {in_use}')
    try:
        full = check_database()
    finally:
        pg_admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
    assert full["status"] == WARNING, full
    assert (full["connections"], full["connection_limit"]) == (in_use, in_use)
    assert "connections that may be open are in use" in full["reason"]
