"""GET /api/stats/ figures against known histories, with an explicit clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs.models import Job, JobStatus
from monitoring.rollup import SPECS, rollup_fold, rollup_rebuild, rollup_reconcile
from monitoring.stats import BadRange, stats_summary
from tests.monitoring.conftest import NOW, ago, make_job

pytestmark = pytest.mark.django_db


def _history() -> None:
    # A: completed 2 h ago, waited 10 s, ran 30 s.
    make_job(
        status="completed",
        created=ago(hours=2),
        started=ago(hours=2) + timedelta(seconds=10),
        finished=ago(hours=2) + timedelta(seconds=40),
    )
    # B: failed 3 h ago, waited 5 s, ran 20 s.
    make_job(
        status="failed",
        created=ago(hours=3),
        started=ago(hours=3) + timedelta(seconds=5),
        finished=ago(hours=3) + timedelta(seconds=25),
        error="boom",
    )
    # C: created and started 25 h ago (outside 1d), finished 23 h ago (inside): ran 7200 s.
    make_job(status="completed", created=ago(hours=25, seconds=1), started=ago(hours=25), finished=ago(hours=23))
    # D: running, created 10 min ago, waited 60 s.
    make_job(status="running", created=ago(minutes=10), started=ago(minutes=9))
    # E: queued exactly at the start of the 1d window (included: the start is inclusive).
    make_job(status="queued", created=ago(days=1))
    # F: cancelled, created exactly now (excluded: the end is exclusive).
    make_job(status="cancelled", created=NOW, finished=NOW)


def test_empty_history_gives_zero_counts_and_null_rates(fold: Any) -> None:
    fold()
    stats = stats_summary(range_name="1d", now=NOW)

    assert stats["total"] == 0
    assert set(stats["counts"].values()) == {0}
    assert stats["success_rate"] is None
    assert stats["duration"] == {"count": 0, "mean": None, "p95": None}
    assert stats["queue_wait"] == {"count": 0, "mean": None, "p95": None}
    assert stats["throughput_per_hour"] == 0.0
    assert stats["today"] == {"total": 0, "completed": 0, "failed": 0}
    assert len(stats["daily"]) == 7
    assert all(d["completed"] == d["failed"] == 0 for d in stats["daily"])
    assert len(stats["hourly"]) == 24
    assert all(h == {**h, "created": 0, "completed": 0, "failed": 0} for h in stats["hourly"])


def test_one_day_range_counts_every_figure_with_inclusive_start_and_exclusive_end(fold: Any) -> None:
    _history()
    fold()

    stats = stats_summary(range_name="1d", now=NOW)

    assert stats["window"] == {"range": "1d", "from": ago(days=1).isoformat(), "to": NOW.isoformat()}
    # The cohort of jobs created in [now - 1 day, now): A, B, D and E (not C, created earlier; not F, at now).
    assert stats["counts"] == {"queued": 1, "running": 1, "paused": 0, "completed": 1, "failed": 1, "cancelled": 0}
    assert stats["total"] == 4
    assert stats["active"] == 1
    assert stats["finished"] == {"completed": 1, "failed": 1, "cancelled": 0}
    assert stats["success_rate"] == 50.0
    assert stats["duration"] == {"count": 2, "mean": 25.0, "p95": 30.0}
    assert stats["queue_wait"] == {"count": 3, "mean": 25.0, "p95": 60.0}
    assert stats["throughput_per_hour"] == round(1 / 24, 4)
    # Today (UTC midnight to now, inclusive of now): A, B, D and F were created; A completed, B failed.
    assert stats["today"] == {"total": 4, "completed": 1, "failed": 1}


def test_daily_series_covers_seven_days_ending_today(fold: Any) -> None:
    _history()
    fold()

    daily = stats_summary(now=NOW)["daily"]

    assert [d["date"] for d in daily] == [f"2026-03-{day:02d}" for day in range(4, 11)]
    assert daily[-1] == {"date": "2026-03-10", "completed": 1, "failed": 1}
    assert daily[-2] == {"date": "2026-03-09", "completed": 1, "failed": 0}
    assert sum(d["completed"] + d["failed"] for d in daily[:-2]) == 0


def test_hourly_series_has_24_clock_hours_ending_with_the_current_one(fold: Any) -> None:
    _history()
    fold()

    hourly = {h["hour"][:16]: h for h in stats_summary(now=NOW)["hourly"]}

    assert list(hourly)[0] == "2026-03-09T13:00"
    assert list(hourly)[-1] == "2026-03-10T12:00"
    assert hourly["2026-03-10T12:00"]["created"] == 2  # D and F
    assert hourly["2026-03-10T10:00"] == {**hourly["2026-03-10T10:00"], "created": 1, "completed": 1}
    assert hourly["2026-03-10T09:00"] == {**hourly["2026-03-10T09:00"], "created": 1, "failed": 1}
    assert hourly["2026-03-09T13:00"] == {**hourly["2026-03-09T13:00"], "created": 0, "completed": 0}
    assert sum(h["created"] for h in hourly.values()) == 4


def test_one_hour_range_sees_only_the_last_hour(fold: Any) -> None:
    _history()
    fold()

    stats = stats_summary(range_name="1h", now=NOW)

    assert stats["total"] == 1
    assert stats["counts"]["running"] == 1
    assert stats["finished"] == {"completed": 0, "failed": 0, "cancelled": 0}
    assert stats["success_rate"] is None
    assert stats["queue_wait"] == {"count": 1, "mean": 60.0, "p95": 60.0}


def test_all_range_counts_everything_and_spreads_throughput_since_the_first_job(fold: Any) -> None:
    _history()
    fold()

    stats = stats_summary(range_name="all", now=NOW + timedelta(seconds=1))

    assert stats["total"] == 6
    assert stats["window"]["from"] is None
    # 2 completed over the 25 h 1 s (+1 s) since the first job was created.
    assert stats["throughput_per_hour"] == round(2 / ((25 * 3600 + 2) / 3600), 4)


def test_custom_from_to_window(fold: Any) -> None:
    _history()
    fold()

    stats = stats_summary(start=ago(hours=3).isoformat(), end=ago(hours=2).isoformat(), now=NOW)

    assert stats["window"]["range"] == "custom"
    assert stats["counts"][JobStatus.FAILED] == 1
    assert stats["total"] == 1
    assert stats["duration"] == {"count": 1, "mean": 20.0, "p95": 20.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"range_name": "2w"}, "range"),
        ({"start": "yesterday"}, "from"),
        ({"start": NOW.isoformat(), "end": ago(hours=1).isoformat()}, "after"),
    ],
)
def test_bad_ranges_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(BadRange, match=message):
        stats_summary(now=NOW, **kwargs)


def test_figures_stay_exact_when_jobs_change_after_the_last_fold() -> None:
    _history()
    rollup_fold(now=NOW)
    # After the fold, with updated_at stamped as the services do: B (failed 3 h ago) is retried and
    # completes, and a job created 5 h ago (in an hour that has a bucket) completes.
    Job.objects.filter(status="failed").update(status="completed", updated_at=NOW)
    late = make_job(status="completed", created=ago(hours=5), started=ago(hours=5), finished=ago(hours=4))
    Job.objects.filter(pk=late.pk).update(updated_at=NOW)

    stats = stats_summary(range_name="1d", now=NOW)

    assert stats["finished"] == {"completed": 3, "failed": 0, "cancelled": 0}
    assert stats["duration"]["count"] == 3


def test_deleted_jobs_leave_the_buckets_at_the_next_rebuild() -> None:
    _history()
    rollup_fold(now=NOW)
    Job.objects.filter(status="failed").delete()
    assert stats_summary(range_name="1d", now=NOW)["counts"]["failed"] == 1  # not seen until a rebuild

    rollup_rebuild(now=NOW)

    assert stats_summary(range_name="1d", now=NOW)["counts"]["failed"] == 0


def _tables() -> dict[str, list[tuple]]:
    return {
        spec.model.__name__: sorted(map(tuple, spec.model.objects.values_list(*[*spec.columns, *spec.figures])))
        for spec in SPECS
    }


def test_reconcile_finds_the_hours_that_lost_jobs_and_ends_like_a_full_rebuild() -> None:
    _history()
    old = make_job(status="completed", created=ago(days=3), started=ago(days=3), finished=ago(days=3), error="x")
    rollup_fold(now=NOW)
    rollup_fold(now=NOW + timedelta(hours=1))  # nothing changed since this one
    assert rollup_reconcile(now=NOW + timedelta(hours=1)) == 0  # nothing deleted: nothing to redo
    Job.objects.filter(pk=old.pk).delete()
    Job.objects.filter(status="failed").delete()

    recomputed = rollup_reconcile(now=NOW + timedelta(hours=1))  # only the deletions' hours

    assert recomputed == 2
    assert stats_summary(range_name="all", now=NOW + timedelta(hours=1))["total"] == 5  # A, C, D, E, F
    reconciled = _tables()
    rollup_rebuild(now=NOW + timedelta(hours=1))
    assert reconciled == _tables()
