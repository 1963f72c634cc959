"""Counters that only grow: what ``/metrics``' ``*_total`` series and its run-time histogram count.

Each increment is one row of ``CounterEvent`` inserted in the transaction of the change it
counts (``jobs.services``: an enqueue, a finish, a retry, a stall; ``monitoring.alerts``: an
alert that fires), so a counter moves exactly when the change commits and never for one rolled
back. The monitor folds the rows into ``CounterTotal`` (``counters_fold``, a duty); reading adds
the totals and the rows not folded yet in one statement. Neither table is touched by retention,
so a purge of old jobs and events, or a restart of any process, never lowers a counter.

Why rows and a fold, not ``UPDATE total = total + 1``: every finish of a type would update the
same row, and on PostgreSQL concurrent workers would queue on its row lock until each commit
(the claim that follows a finish is in the same transaction); two transactions counting two
types in opposite orders (a batch) could deadlock. An insert waits for nobody. docs/monitoring.md
and docs/benchmarks.md give the cost per job.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from django.db import transaction

from jobs import rows
from jobs.models import DURATION_BUCKETS, CounterEvent

ENQUEUED = "enqueued"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
RETRIED = "retried"  # another attempt queued after a failure, a stall or a retry by hand
STALLED = "stalled"  # settled by the stall sweep or a worker that gave its job up
ALERT_FIRED = "alert_fired"  # label: the rule's name
FINISHES = (COMPLETED, FAILED, CANCELLED)
# Events folded per statement; the duty folds until nothing is left.
FOLD_BATCH = 5000


def duration_bucket(seconds: float | None) -> int:
    """Index into ``DURATION_BUCKETS`` of the first bound at or above ``seconds`` (``len``: above all); -1: none."""
    if seconds is None:
        return -1
    return bisect_left(DURATION_BUCKETS, seconds)


def counter_add(*, name: str, label: str, duration: float | None = None) -> None:
    """Count one ``name`` for ``label`` (a job type, a rule), inside the caller's transaction.

    ``duration`` (seconds) of a finish also goes into the run-time histogram.
    """
    rows.counter_add(name, label, duration_bucket(duration), float(duration or 0.0))


def counters_add_many(*, name: str, labels: list[str]) -> None:
    """Count one ``name`` for each of ``labels`` (a bulk enqueue), in one statement (``rows.insert_many``)."""
    rows.insert_many([CounterEvent(name=name, label=label) for label in labels])


def counters_fold(*, batch: int = FOLD_BATCH) -> int:
    """Fold the pending events into the totals, ``batch`` at a time; returns the batches that moved rows."""
    batches = 0
    while True:
        with transaction.atomic():
            changed = rows.counters_fold(batch)
        if not changed:
            return batches
        batches += 1


@dataclass
class Counters:
    """Every counter as of one snapshot: ``counts[name][label]``, and each label's run-time histogram."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # label -> per-bucket counts (not cumulative; the last is above every bound), and the sum.
    buckets: dict[str, list[int]] = field(default_factory=dict)
    duration_sum: dict[str, float] = field(default_factory=dict)

    def count(self, name: str, label: str) -> int:
        return self.counts.get(name, {}).get(label, 0)

    def labels(self, *names: str) -> set[str]:
        return {label for name in names for label in self.counts.get(name, {})}


def counters_read() -> Counters:
    """Every counter, folded and pending, from one statement."""
    out = Counters()
    for name, label, bucket, count, amount in rows.counters_read():
        per_name = out.counts.setdefault(name, {})
        per_name[label] = per_name.get(label, 0) + count
        if name in FINISHES and bucket >= 0:
            histogram = out.buckets.setdefault(label, [0] * (len(DURATION_BUCKETS) + 1))
            histogram[min(bucket, len(DURATION_BUCKETS))] += count
            out.duration_sum[label] = out.duration_sum.get(label, 0.0) + amount
    return out
