"""The checks of the chaos soak (``benchmarks/chaos.py``), on plain data so that each one
can be shown to fail (``tests/deploy/test_chaos.py``).

A job's events are the rows of ``GET /api/jobs/<id>/events/``: dicts with ``event_id``,
``kind`` and ``payload`` (``payload["job"]`` is the job right after the change).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
# Kinds after which no worker runs the job any more (until the next ``started``).
RUN_ENDS = ("completed", "failed", "cancelled", "paused", "suspended", "stalled")
# Kinds only the worker that runs the job writes.
WORKER_KINDS = ("progress", "step", "log")
PROCESSED = re.compile(r"Processed items (\d+)-(\d+)\.")
STALLED = re.compile(r"worker [^ ]*?:(\d+) (?:stopped|is gone)")


def run_problems(events: Sequence[dict[str, Any]]) -> list[str]:
    """Where the event log shows the job run twice at once.

    Two ``started`` without a finish, suspension or stall between them; a worker's report
    (progress, step, log) from another worker than the one running it, or while none runs;
    two runs of one attempt that processed the same demo item ("Processed items a-b").
    """
    problems: list[str] = []
    running: str | None = None
    ranges: dict[int, list[tuple[int, int]]] = {}
    for event in sorted(events, key=lambda e: e["event_id"]):
        kind, job = event["kind"], event["payload"].get("job") or {}
        worker = job.get("worker") or ""
        if kind == "started":
            if running is not None:
                problems.append(f"event {event['event_id']}: started on {worker} while running on {running}")
            running = worker
        elif kind in RUN_ENDS:
            running = None
        elif kind in WORKER_KINDS:
            if running is None:
                problems.append(f"event {event['event_id']}: {kind} from {worker} while no run was open")
            elif worker != running:
                problems.append(f"event {event['event_id']}: {kind} from {worker} during the run on {running}")
        if kind == "log":
            for line in event["payload"].get("lines", ()):
                match = PROCESSED.search(str(line.get("message", "")))
                if match:
                    ranges.setdefault(int(job.get("attempts") or 0), []).append(
                        (int(match.group(1)), int(match.group(2)))
                    )
    for attempt, spans in ranges.items():
        ordered = sorted(spans)
        for (a_first, a_last), (b_first, b_last) in zip(ordered, ordered[1:], strict=False):
            if b_first <= a_last:
                problems.append(
                    f"attempt {attempt}: items {a_first}-{a_last} and {b_first}-{b_last} were both processed"
                )
    return problems


def skipped_items(events: Sequence[dict[str, Any]], items: int) -> list[int]:
    """Items of a completed demo job that no run logged as processed (a continuation that
    skipped some)."""
    done: set[int] = set()
    for event in events:
        if event["kind"] == "log":
            for line in event["payload"].get("lines", ()):
                match = PROCESSED.search(str(line.get("message", "")))
                if match:
                    done.update(range(int(match.group(1)), int(match.group(2)) + 1))
    return [i for i in range(1, items + 1) if i not in done]


def failure_cause(error: str, killed_pids: set[int], fail_at: int | None) -> str:
    """Why a failed job failed: ``fail_at`` (asked for), ``worker-killed`` (its worker was
    SIGKILLed), or ``unexpected`` (anything else: a database error, a stall of a live worker)."""
    if fail_at is not None and f"Demo failure at item {fail_at} " in error:
        return "fail_at"
    match = STALLED.search(error)
    if match and int(match.group(1)) in killed_pids:
        return "worker-killed"
    return "unexpected"


@dataclass
class Delivery:
    """What one subscriber saw of one job, against the job's log."""

    missing_status: list[int] = field(default_factory=list)  # status changes and logs never delivered
    missing_last_progress: list[int] = field(default_factory=list)
    conflated: list[int] = field(default_factory=list)  # earlier progress replaced by a newer one
    extra: list[int] = field(default_factory=list)  # delivered, but not in the job's log

    @property
    def broken(self) -> bool:
        """Against the contract (docs/websocket.md, "Delivery guarantees"): a socket may
        conflate a job's progress, never a status change, a log, or the last progress."""
        return bool(self.missing_status or self.missing_last_progress or self.extra)


def delivery(seen: Iterable[int], events: Sequence[dict[str, Any]]) -> Delivery:
    seen_ids = set(seen)
    logged = {e["event_id"]: e["kind"] for e in events}
    result = Delivery(extra=sorted(seen_ids - set(logged)))
    progress = [event_id for event_id, kind in sorted(logged.items()) if kind == "progress"]
    for event_id, kind in sorted(logged.items()):
        if event_id in seen_ids:
            continue
        if kind != "progress":
            result.missing_status.append(event_id)
        elif event_id == progress[-1]:
            result.missing_last_progress.append(event_id)
        else:
            result.conflated.append(event_id)
    return result


def leader_overlaps(terms: Sequence[tuple[float, float, str]]) -> list[str]:
    """Times two monitors led at once: ``terms`` are (started, stopped, who) of every term."""
    problems = []
    spans = sorted(terms)
    for i, (_start_a, end_a, a) in enumerate(spans):
        for start_b, _end_b, b in spans[i + 1 :]:
            if start_b >= end_a:
                break
            if a != b:
                problems.append(f"{b} led from {start_b:.3f} while {a} led until {end_a:.3f}")
    return problems


def leader_terms(log: str, who: str, ended_at: float | None) -> list[tuple[float, float, str]]:
    """The terms one monitor process led, from its log ("monitor: running at T", "monitor:
    stopped leading at T"); a term still open ends at ``ended_at`` (its SIGKILL or exit)."""
    starts = [float(m) for m in re.findall(r"monitor: running at ([0-9.]+)", log)]
    stops = [float(m) for m in re.findall(r"monitor: stopped leading at ([0-9.]+)", log)]
    return [
        (start, stops[i] if i < len(stops) else (ended_at if ended_at is not None else float("inf")), who)
        for i, start in enumerate(starts)
    ]
