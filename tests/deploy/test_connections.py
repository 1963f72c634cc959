"""Bounded database connections: a web process holds at most its pool, however many
requests it serves (DESIGN.md, "Running it"; issue 14, item 1).

Under ASGI every request runs its sync part in a thread of its own; with persistent
connections (``CONN_MAX_AGE``) each of those threads kept its own connection open, and
200 requests to one daphne left 26 connections behind.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.conftest import REQUIRE_SERVICES, wait_for
from tests.live.test_live_e2e import start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

POOL_MAX = 4  # smaller than the default, so that a leak shows within 200 requests


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL is required in this run")
        pytest.skip("connection pooling is PostgreSQL's (CI sets DATABASE_URL)")


def others_connected() -> int:
    """Connections to this test database, other than the test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_daphne_serving_200_api_requests_holds_at_most_its_pool(postgresql: None, processes: Any, user: Any) -> None:
    token = Token.objects.create(user=user).key
    before = others_connected()
    port = start_daphne(processes, JOBADMIN_DB_POOL_MAX=str(POOL_MAX))

    def get(path: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    paths = ["/api/jobs/", "/api/jobs/?ordering=-created_at", "/api/health/", "/api/jobs/?status=queued"] * 50
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(get, paths))
    assert statuses == [200] * 200

    held = others_connected() - before
    assert held <= POOL_MAX, f"daphne holds {held} connections after 200 requests (pool of {POOL_MAX})"
    # and it still serves: the pool hands its connections out again
    assert get("/api/jobs/") == 200
    wait_for(lambda: others_connected() - before <= POOL_MAX, timeout=5)
