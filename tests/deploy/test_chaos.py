"""The chaos soak, short (issue 14, "What it must show"): ``benchmarks/chaos.py`` for a minute
on PostgreSQL and a Redis of its own, with real processes (2 daphne, 2 qcluster, a monitor
and a standby) killed while demo jobs run and websocket subscribers follow them.

The full run and its figures: docs/benchmarks.md, "Chaos soak". Below it, the soak's checks
on made-up logs: each one finds what it is there to find.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import pytest
from django.db import connection

from benchmarks import chaos
from benchmarks import chaos_checks as checks
from tests.conftest import REQUIRE_SERVICES, ROOT

CI_FAULTS = "kill-worker,kill-monitor,kill-daphne,redis-restart,db-block,partition-worker,partition-monitor"


@pytest.mark.processes
def test_a_minute_of_faults_loses_nothing_runs_nothing_twice_and_delivers_every_event() -> None:
    if connection.vendor != "postgresql" or not shutil.which("redis-server"):
        if REQUIRE_SERVICES:
            pytest.fail("the chaos soak needs PostgreSQL (DATABASE_URL) and redis-server in this run")
        pytest.skip("the chaos soak runs on PostgreSQL with a redis-server (CI sets DATABASE_URL)")
    # 72 s: room for each of the seven faults once (a fault every 9 s ± 20 % from the 6th second).
    argv = ["--duration", "72", "--fault-every", "9", "--warmup", "6", "--fault-tail", "8"]
    # The stall threshold must outlast the longest block (10-20 s), or workers give their jobs up
    # by design (docs/engine.md, "Database outages"); the soak refuses a shorter one.
    argv += ["--stall-threshold", "25", "--faults", CI_FAULTS, "--seed", "14"]
    # The soak makes a database of its own on the server of DATABASE_URL (it blocks and drops it)
    # and gives its processes settings of its own, whatever this run's environment holds.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "result: PASS" in done.stdout
    assert "faults injected" in done.stdout


def test_the_soak_refuses_a_stall_threshold_its_blocks_would_outlast(capsys: pytest.CaptureFixture[str]) -> None:
    # A block longer than the workers' give-up cap (threshold minus two heartbeats) fails live
    # workers' jobs on purpose: such a soak would report a failure that is the configuration's.
    base = ["--database-url", "postgres://127.0.0.1/x", "--faults", "kill-worker,db-block"]
    with pytest.raises(SystemExit) as refused:
        chaos.parse([*base, "--stall-threshold", "10"])
    assert refused.value.code == 2
    assert "--stall-threshold 10 is too short for blocks of up to 20 s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        chaos.parse([*base, "--stall-threshold", "12", "--block-seconds", "5-9"])
    assert chaos.outage_budget(25) >= 20
    # Without database blocks, or with blocks it can ride out, any threshold will do.
    if shutil.which("redis-server"):
        assert chaos.parse([*base, "--stall-threshold", "13", "--block-seconds", "5-9"]).block_seconds == (5.0, 9.0)
        assert chaos.parse([*base, "--stall-threshold", "10", "--faults", "kill-worker"]).stall_threshold == 10


def test_the_soak_refuses_partitions_the_workers_would_not_ride_out_or_no_standby_could_notice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--database-url", "postgres://127.0.0.1/x", "--lease", "3"]
    with pytest.raises(SystemExit):
        chaos.parse([*base, "--faults", "partition-worker", "--stall-threshold", "12", "--partition-seconds", "6-12"])
    assert "too short for partitions of up to 12 s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        chaos.parse([*base, "--faults", "partition-monitor", "--partition-seconds", "5-8"])
    assert "must start above two leases (6 s)" in capsys.readouterr().err
    if shutil.which("redis-server"):
        args = chaos.parse([*base, "--faults", "partition-worker,partition-monitor", "--stall-threshold", "25"])
        assert args.partition_seconds == (7.0, 12.0)


def event(event_id: int, kind: str, worker: str = "h:1", attempt: int = 1, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "kind": kind, "payload": {"job": {"worker": worker, "attempts": attempt}, **extra}}


def processed(event_id: int, first: int, last: int, worker: str = "h:1") -> dict[str, Any]:
    return event(event_id, "log", worker, lines=[{"message": f"Processed items {first}-{last}."}])


def test_a_paused_and_resumed_run_on_two_workers_is_not_a_duplicate() -> None:
    log = [
        event(1, "created", ""),
        event(2, "started", "h:1"),
        event(3, "progress", "h:1"),
        event(4, "pause-requested", "h:1"),
        processed(5, 1, 40, "h:1"),
        event(6, "paused", ""),
        event(7, "resumed", ""),
        event(8, "started", "h:2"),
        processed(9, 41, 100, "h:2"),
        event(10, "completed", "h:2"),
    ]
    assert checks.run_problems(log) == []
    assert checks.skipped_items(log, 100) == []


def test_two_starts_without_an_end_between_are_a_duplicate() -> None:
    log = [event(1, "created", ""), event(2, "started", "h:1"), event(3, "started", "h:2"), event(4, "completed")]
    assert checks.run_problems(log) == ["event 3: started on h:2 while running on h:1"]


def test_a_report_from_another_worker_than_the_running_one_is_a_duplicate() -> None:
    log = [event(2, "started", "h:1"), event(3, "progress", "h:2"), event(4, "completed", "h:1")]
    assert checks.run_problems(log) == ["event 3: progress from h:2 during the run on h:1"]


def test_items_processed_by_two_runs_of_one_attempt_are_a_duplicate() -> None:
    log = [
        event(2, "started", "h:1"),
        processed(3, 1, 40),
        event(4, "suspended"),
        event(5, "started", "h:2"),
        processed(6, 35, 100, "h:2"),
        event(7, "completed", "h:2"),
    ]
    assert checks.run_problems(log) == ["attempt 1: items 1-40 and 35-100 were both processed"]


def test_a_completed_continuation_that_skipped_items_is_found() -> None:
    log = [processed(3, 1, 40), processed(6, 45, 100)]
    assert checks.skipped_items(log, 100) == [41, 42, 43, 44]


def test_a_subscriber_may_miss_an_older_progress_but_no_status_change_nor_the_last_progress() -> None:
    log = [event(1, "created"), event(2, "progress"), event(3, "progress"), event(4, "completed")]

    conflated = checks.delivery([1, 3, 4], log)
    assert not conflated.broken
    assert conflated.conflated == [2]

    assert checks.delivery([1, 2, 3], log).missing_status == [4]
    assert checks.delivery([1, 2, 4], log).missing_last_progress == [3]
    assert checks.delivery([1, 2, 3, 4, 9], log).extra == [9]
    assert all(checks.delivery(seen, log).broken for seen in ([1, 2, 3], [1, 2, 4], [1, 2, 3, 4, 9]))


def test_two_monitors_leading_at_once_are_found_from_their_logs() -> None:
    first = checks.leader_terms("monitor: running at 100.0 (h 1)\nmonitor: stopped leading at 110.0\n", "m1", None)
    second = checks.leader_terms("monitor: running at 109.5 (h 2)\n", "m2", 120.0)
    third = checks.leader_terms("monitor: running at 120.0 (h 3)\n", "m3", None)
    assert first == [(100.0, 110.0, "m1")]
    assert checks.leader_overlaps([*first, *second]) == ["m2 led from 109.500 while m1 led until 110.000"]
    assert checks.leader_overlaps([*second, *third]) == []


def test_a_failure_counts_as_expected_only_when_asked_for_or_when_its_worker_was_killed() -> None:
    assert checks.failure_cause("RuntimeError: Demo failure at item 7 of 20.", set(), 7) == "fail_at"
    stalled = "Stalled: worker vm:4242 stopped sending heartbeats."
    assert checks.failure_cause(stalled, {4242}, None) == "worker-killed"
    assert checks.failure_cause(stalled, {4243}, None) == "unexpected"
    # A restarted cluster settles the jobs of its killed run at once (jobs.services.stalls).
    orphaned = "Its worker vm:4242 is gone: found when a cluster started on vm."
    assert checks.failure_cause(orphaned, {4242}, None) == "worker-killed"
    assert checks.failure_cause(orphaned, {4243}, None) == "unexpected"
    assert checks.failure_cause("OperationalError: terminating connection", {4242}, 7) == "unexpected"
