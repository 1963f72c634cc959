"""How long a worker rides out a database outage, and the check that keeps it honest."""

from __future__ import annotations

from typing import Any

from jobs import outage


def test_the_grace_is_capped_two_heartbeats_below_the_stall_threshold(settings: Any) -> None:
    settings.JOBADMIN_STALL_THRESHOLD = 90
    settings.JOBADMIN_HEARTBEAT_INTERVAL = 2
    settings.JOBADMIN_DB_OUTAGE_GRACE = 60
    assert outage.give_up_after() == 60
    assert outage.check_grace() == []

    settings.JOBADMIN_DB_OUTAGE_GRACE = 100
    assert outage.give_up_after() == 86
    [warning] = outage.check_grace()
    assert warning.id == "jobs.W001"
    assert "after 86 s" in warning.msg
