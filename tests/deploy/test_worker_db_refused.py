"""A worker that cannot reach the database says so in health at once (issue 21, item 5): a real
``qcluster`` that reaches Redis (its wake-ups come) but whose database address refuses every
connection. Health, read by this process on the real database, names the worker and the error
while the wake-up is still being retried; no sample to wait for."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from jobs import services, worker_reports
from monitoring.health import CRITICAL, check_workers
from tests.conftest import free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_worker_whose_claim_is_refused_by_the_database_shows_in_health(processes: Any, requires_redis: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("with SQLite the broker is the database: a worker that cannot reach it gets no wake-up")
    closed = free_port()  # nothing listens there: every connection is refused
    name = connection.settings_dict["NAME"]
    processes.qcluster(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed}/{name}", Q_WORKERS="1")

    services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    try:
        check = wait_for(
            lambda: (c := check_workers()).get("database_errors") and c,
            timeout=30,
            message="health never heard of the worker's database error",
        )
    finally:
        processes.stop_all()
        for record in worker_reports.database_error_records():  # not in the next test's health
            worker_reports.forget(record["worker"])

    # Its one worker is refused: nothing can run (critical); beside working ones it would be a warning.
    assert check["status"] == CRITICAL
    assert "1 worker(s) cannot reach the database (OperationalError" in check["reason"]
    (record,) = check["database_errors"]
    assert record["worker"].rpartition(":")[2].isdigit()
    assert record["disk_full"] is False
