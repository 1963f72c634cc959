"""The monitor runs what the apps register, in registration order, and one failing duty
stops no other."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from django.core.management import call_command

from jobs import duties


def test_each_app_registers_its_own_duties_in_app_order() -> None:
    names = [duty.name for duty in duties.periodic_duties()]
    # The engine's safety net first (jobs is installed before monitoring), then monitoring's.
    assert names[:7] == ["dispatch", "schedules", "counters", "metrics", "heartbeat", "statistics", "alerts"]
    assert [duty.name for duty in duties.background_duties()] == ["relay"]


@pytest.mark.django_db(transaction=True)
def test_monitor_runs_registered_duties_and_survives_a_failing_one() -> None:
    ran: list[str] = []

    def failing(now: datetime) -> None:
        ran.append("failing")
        raise RuntimeError("boom")

    def recording(now: datetime) -> None:
        ran.append("recording")

    saved = dict(duties._periodic)
    try:
        duties.register_duty("test-failing", run=failing, interval=lambda: 0.0)
        duties.register_duty("test-recording", run=recording, interval=lambda: 0.0)
        err = io.StringIO()
        call_command("monitor", "--once", stdout=io.StringIO(), stderr=err)
    finally:
        duties._periodic.clear()
        duties._periodic.update(saved)
    assert ran == ["failing", "recording"]
    assert "monitor: test-failing failed: RuntimeError('boom')" in err.getvalue()
