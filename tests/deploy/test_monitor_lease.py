"""Exactly one monitor, through broken connections and database outages (DESIGN.md,
"Monitoring"; issue 14, item 3).

Real ``manage.py monitor`` processes on this run's own test database, which the tests
break: the lock's connection terminated (``pg_terminate_backend``), the database refusing
connections (``ALLOW_CONNECTIONS false``). Each monitor prints when it starts leading and
when it has stopped every duty; the tests check from those times that no two monitors
ever led at once.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest
from django.db import connection

from monitoring.health import MONITOR_APPLICATION_NAME, monitor_leader
from tests.conftest import Processes, child_env, wait_for
from tests.deploy.conftest import DatabaseBlock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

LEASE = 3.0  # tests/settings.py
RUNNING = re.compile(rb"monitor: running at ([0-9.]+)")
STOPPED = re.compile(rb"monitor: stopped leading at ([0-9.]+)")


def terms(processes: Processes, proc: Any, killed_at: float | None = None) -> list[tuple[float, float]]:
    """The times ``proc`` led: (started, stopped); one still open ends now, or when it was killed."""
    log = processes.log_of(proc)
    starts = [float(m) for m in RUNNING.findall(log)]
    stops = [float(m) for m in STOPPED.findall(log)]
    end = killed_at if killed_at is not None else time.time()
    return [(start, stops[i] if i < len(stops) else end) for i, start in enumerate(starts)]


def assert_never_two_leaders(*leaders: list[tuple[float, float]]) -> None:
    spans = sorted((start, end, who) for who, spans in enumerate(leaders) for start, end in spans)
    for (_start_a, end_a, a), (start_b, _end_b, b) in zip(spans, spans[1:], strict=False):
        assert start_b >= end_a, f"monitor {b} started leading at {start_b:.3f} while monitor {a} led until {end_a:.3f}"


def lease_connection_pid() -> int | None:
    """The server pid of the leader's lease connection (it carries the leader's host and pid)."""
    leader = monitor_leader()
    if leader is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            [f"{MONITOR_APPLICATION_NAME} {leader['host']} {leader['pid']}"],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def start_monitor(processes: Processes, name: str) -> Any:
    return processes.start("manage.py", "monitor", env=child_env(JOBADMIN_MONITOR_LEASE=str(LEASE)), name=name)


def leads(processes: Processes, proc: Any, count: int = 1) -> bool:
    assert proc.poll() is None, processes.log_of(proc).decode(errors="replace")
    return len(RUNNING.findall(processes.log_of(proc))) >= count


def leader_and_standby(processes: Processes) -> tuple[Any, Any]:
    """A monitor that leads, and a second one that is up and waiting."""
    first = start_monitor(processes, "first")
    wait_for(lambda: leads(processes, first), timeout=60, message="the first monitor never led")
    second = start_monitor(processes, "second")
    time.sleep(2)
    return first, second


def test_a_leader_whose_lease_connection_is_terminated_renews_on_a_new_one_and_keeps_the_lead(
    pg_admin: Any, processes: Processes
) -> None:
    first, second = leader_and_standby(processes)
    leader = monitor_leader()
    assert leader is not None
    assert leader["pid"] == first.pid
    assert leader["lease_age_seconds"] < 5 * LEASE

    holder = lease_connection_pid()
    assert holder is not None
    pg_admin.execute("SELECT pg_terminate_backend(%s)", [holder])

    # A lease row outlives its connection: the leader renews on a new one, inside its lease.
    wait_for(lambda: lease_connection_pid() not in (None, holder), timeout=10, message="the leader never reconnected")
    time.sleep(2 * LEASE)
    again = monitor_leader()
    assert again is not None
    assert (again["pid"], again["term"]) == (first.pid, leader["term"])
    assert first.poll() is None
    assert second.poll() is None
    assert not leads(processes, second)
    assert_never_two_leaders(terms(processes, first), terms(processes, second))


def test_a_standby_waits_through_a_database_outage_and_takes_over_when_the_leader_dies(
    database_block: DatabaseBlock, processes: Processes
) -> None:
    first, second = leader_and_standby(processes)

    # The database goes away for everyone but this test's own session.
    database_block.close()
    time.sleep(3 * LEASE)
    assert second.poll() is None, "the standby exited during the outage: " + processes.log_of(second).decode()
    assert first.poll() is None, "the leader exited during the outage: " + processes.log_of(first).decode()
    database_block.open()

    # After the outage one of them leads; kill it, the other takes over.
    wait_for(lambda: monitor_leader() is not None, timeout=30)
    leader = monitor_leader()
    assert leader is not None
    dying, standby = (first, second) if leader["pid"] == first.pid else (second, first)
    wait_for(lambda: leads(processes, dying, len(terms(processes, dying)) or 1), timeout=30)
    led_before = len(terms(processes, standby))
    dying.send_signal(signal.SIGKILL)
    killed_at = time.time()
    dying.wait()
    wait_for(lambda: leads(processes, standby, led_before + 1), timeout=10 * LEASE, message="no takeover")
    took_over = terms(processes, standby)[-1][0] - killed_at
    print(f"takeover {took_over:.2f} s after SIGKILL (lease {LEASE} s)")
    assert took_over < LEASE + 3

    assert_never_two_leaders(terms(processes, dying, killed_at), terms(processes, standby))
