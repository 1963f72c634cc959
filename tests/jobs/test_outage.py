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


def test_an_outcome_that_cannot_be_written_is_given_up_after_the_grace(
    db: Any, settings: Any, monkeypatch: Any
) -> None:
    # The long soak: a job that ended during a block retried its outcome for as long as the
    # block lasted, because each retry counted "nothing kept to write" as a write that went
    # through and restarted the grace.
    import time

    import pytest
    from django.db import OperationalError

    from jobs import services
    from jobs.context import JobContext
    from jobs.exceptions import JobLost

    settings.JOBADMIN_DB_OUTAGE_GRACE = 0.3
    monkeypatch.setattr(outage, "RETRY_EVERY", 0.02)
    job = services.job_enqueue(job_type="demo", params={"items": 1})
    ctx = JobContext(job, worker="test-host:1")
    attempts = 0

    def outcome() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 200:  # 4 s: the grace never ran out
            raise AssertionError("still retrying the outcome long after the grace")
        raise OperationalError("the database is out")

    started = time.monotonic()
    with pytest.raises(JobLost):
        ctx.write_through_outage(outcome)
    assert time.monotonic() - started < 1.5
    assert "the database was out" in str(ctx._lost_reason)
