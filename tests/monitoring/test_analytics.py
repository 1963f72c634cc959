"""Analytics endpoints against known histories, and a property test against a reference in Python."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job
from monitoring import stats as stats_module
from monitoring.analytics import (
    _quantile,
    analytics_errors,
    analytics_peak_hours,
    analytics_trends,
    analytics_types,
    analytics_users,
    health_grade,
)
from monitoring.models import JobStatsHour, RollupState
from monitoring.rollup import rollup_fold
from monitoring.stats import BadRange, resolve_window, stats_summary
from tests.factories import UserFactory
from tests.monitoring.conftest import NOW, ago, make_job

pytestmark = pytest.mark.django_db

DAY = resolve_window(range_name="1d", now=NOW)
WALK_MIN = stats_module.SQLITE_WALK_MIN


@pytest.fixture(autouse=True)
def _restore_walk_min() -> Any:
    yield
    stats_module.SQLITE_WALK_MIN = WALK_MIN


def _history(users: list[Any]) -> None:
    alice, bob = users
    # demo: 2 completed (30 s, 10 s), 1 failed (20 s); export-jobs: 1 failed, 1 queued.
    make_job(
        type="demo",
        status="completed",
        user=alice,
        created=ago(hours=5),
        started=ago(hours=5),
        finished=ago(hours=5) + timedelta(seconds=30),
    )
    make_job(
        type="demo",
        status="completed",
        user=alice,
        created=ago(hours=4),
        started=ago(hours=4),
        finished=ago(hours=4) + timedelta(seconds=10),
    )
    make_job(
        type="demo",
        status="failed",
        user=bob,
        created=ago(hours=3),
        started=ago(hours=3),
        finished=ago(hours=3) + timedelta(seconds=20),
        error="ValueError: item 7 is bad",
    )
    make_job(
        type="export-jobs",
        status="failed",
        user=alice,
        created=ago(hours=2),
        started=ago(hours=2),
        finished=ago(hours=2) + timedelta(seconds=5),
        error="ValueError: item 7 is bad",
    )
    make_job(type="export-jobs", status="queued", created=ago(minutes=5))
    # Outside the 1d window: must not count.
    make_job(
        type="demo",
        status="failed",
        user=bob,
        created=ago(days=2),
        started=ago(days=2),
        finished=ago(days=2) + timedelta(seconds=1),
        error="old error",
    )


def test_types_breakdown_counts_outcomes_and_durations_per_type(fold: Any) -> None:
    _history([UserFactory(), UserFactory()])
    fold()

    rows = {r["type"]: r for r in analytics_types(window=DAY)}
    health = {name: {key: rows[name].pop(key) for key in HEALTH_KEYS} for name in rows}

    assert rows["demo"] == {
        "type": "demo",
        "total": 3,
        "completed": 2,
        "failed": 1,
        "cancelled": 0,
        "active": 0,
        "queued": 0,
        "success_rate": 66.67,
        "duration_mean": 20.0,
    }
    assert rows["export-jobs"] == {
        "type": "export-jobs",
        "total": 2,
        "completed": 0,
        "failed": 1,
        "cancelled": 0,
        "active": 0,
        "queued": 1,
        "success_rate": 0.0,
        "duration_mean": 5.0,
    }
    demo = health["demo"]
    # 10, 20 and 30 s: the 95th of 3 falls in the (10, 30] bucket, at 92.5 % of its width.
    assert demo["duration_p95"] == 28.5
    assert demo["throughput_per_hour"] == round(2 / 24, 3)
    assert demo["items_per_second"] is None  # the jobs counted no items: graded on errors alone
    assert demo["grade"] == "poor"  # 1 of 3 finished failed: 33 % errors
    assert demo["last_failure"]["error"] == "ValueError: item 7 is bad"
    assert health["export-jobs"]["grade"] == "poor"


HEALTH_KEYS = ("duration_p95", "throughput_per_hour", "items_per_second", "grade", "last_failure")


@pytest.mark.parametrize(
    ("error_rate", "items_per_second", "grade"),
    [
        (None, None, None),
        (10.01, 500.0, "poor"),
        (10.0, 500.0, "fair"),
        (5.01, 500.0, "fair"),
        (0.0, 9.9, "fair"),
        (5.0, 500.0, "good"),
        (1.01, 500.0, "good"),
        (0.5, 49.9, "good"),
        (1.0, 50.0, "excellent"),
        (0.0, None, "excellent"),
    ],
)
def test_the_health_grade_follows_the_seeds_thresholds(error_rate, items_per_second, grade) -> None:
    assert health_grade(error_rate=error_rate, items_per_second=items_per_second) == grade


def test_the_p95_estimate_interpolates_within_its_bucket_like_histogram_quantile() -> None:
    buckets = [(1.0, 0), (10.0, 50), (100.0, 100)]
    assert _quantile(buckets, 100, 0.95) == 91.0
    assert _quantile(buckets, 100, 0.5) == 10.0
    assert _quantile(buckets, 0, 0.95) is None
    assert _quantile([(1.0, 10), (5.0, 10)], 20, 0.95) == 5.0  # past the last bound: that bound


def test_top_users_are_ordered_by_jobs_created(fold: Any) -> None:
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    _history([alice, bob])
    fold()

    rows = analytics_users(window=DAY)

    assert [(r["username"], r["total"], r["completed"], r["failed"]) for r in rows] == [
        ("alice", 3, 2, 1),
        ("bob", 1, 0, 1),
    ]


def test_top_users_are_capped_at_ten() -> None:
    for i in range(12):
        make_job(status="queued", created=ago(minutes=i + 1), user=UserFactory())

    assert len(analytics_users(window=DAY)) == 10


def test_errors_are_grouped_by_message_with_the_most_recent_listed(fold: Any) -> None:
    _history([UserFactory(), UserFactory()])
    fold()

    errors = analytics_errors(window=DAY)

    assert errors["total"] == 2
    assert errors["groups"] == [
        {
            "message": "ValueError: item 7 is bad",
            "count": 2,
            "last_seen": (ago(hours=2) + timedelta(seconds=5)).isoformat(),
            "types": ["demo", "export-jobs"],
        }
    ]
    assert [r["type"] for r in errors["recent"]] == ["export-jobs", "demo"]


def test_peak_hours_are_the_busiest_hours_of_the_day(fold: Any) -> None:
    for hour, count in ((9, 3), (14, 2), (2, 1)):
        for i in range(count):
            make_job(status="queued", created=NOW.replace(hour=hour, minute=i) - timedelta(days=1))
    fold()

    rows = analytics_peak_hours(window=resolve_window(range_name="7d", now=NOW))

    assert rows == [{"hour": 9, "count": 3}, {"hour": 14, "count": 2}, {"hour": 2, "count": 1}]


def test_peak_hours_are_counted_in_the_viewers_zone(fold: Any, api_client: Any, staff_user: Any) -> None:
    # 14:00 UTC on a day in January is 09:00 in New York (EST, UTC-5).
    for i in range(3):
        make_job(status="queued", created=NOW.replace(month=1, day=15, hour=14, minute=i))
    fold()
    window = resolve_window(start=NOW.replace(month=1, day=14), end=NOW.replace(month=1, day=16), now=NOW)
    new_york = ZoneInfo("America/New_York")

    assert analytics_peak_hours(window=window, zone=new_york) == [{"hour": 9, "count": 3}]
    assert analytics_peak_hours(window=window, zone=UTC) == [{"hour": 14, "count": 3}]
    api_client.force_authenticate(staff_user)
    query = {"from": NOW.replace(month=1, day=14).isoformat(), "to": NOW.replace(month=1, day=16).isoformat()}
    body = api_client.get("/api/analytics/peak-hours/", {**query, "tz": "America/New_York"}).json()
    assert (body["time_zone"], body["results"]) == ("America/New_York", [{"hour": 9, "count": 3}])
    assert api_client.get("/api/analytics/peak-hours/", query).json()["time_zone"] == "UTC"  # TIME_ZONE
    bad = api_client.get("/api/analytics/peak-hours/", {"tz": "Mars/Olympus"})
    assert bad.status_code == 400
    assert "tz" in bad.json()


def test_trends_bucket_throughput_and_success_rate_per_hour(fold: Any) -> None:
    _history([UserFactory(), UserFactory()])
    fold()
    window = resolve_window(start=ago(hours=6), end=NOW, now=NOW)

    throughput = analytics_trends(window=window, metric="throughput", interval="1h")
    success = analytics_trends(window=window, metric="success_rate", interval="1h")
    duration = analytics_trends(window=window, metric="duration", interval="1h")

    assert [p["time"][11:16] for p in throughput] == ["06:00", "07:00", "08:00", "09:00", "10:00", "11:00", "12:00"]
    assert [p["completed"] for p in throughput] == [0, 1, 1, 0, 0, 0, 0]
    assert [p["value"] for p in success] == [None, 100.0, 100.0, 0.0, 0.0, None, None]
    assert [p["value"] for p in duration] == [None, 30.0, 10.0, 20.0, 5.0, None, None]


def test_trends_five_minute_buckets_fold_minutes(fold: Any) -> None:
    make_job(status="completed", created=ago(minutes=9), started=ago(minutes=9), finished=ago(minutes=8))
    make_job(status="completed", created=ago(minutes=9), started=ago(minutes=9), finished=ago(minutes=6))
    fold()
    window = resolve_window(start=ago(minutes=10), end=NOW, now=NOW)

    points = analytics_trends(window=window, metric="throughput", interval="5m")

    assert [(p["time"][11:16], p["completed"]) for p in points] == [("12:20", 2), ("12:25", 0), ("12:30", 0)]


def test_trends_refuse_too_many_points() -> None:
    with pytest.raises(BadRange, match="interval"):
        analytics_trends(window=resolve_window(range_name="30d", now=NOW), metric="throughput", interval="1m")


def test_analytics_api_is_staff_only_and_validates_input(api_client: Any, user: Any, staff_user: Any) -> None:
    api_client.force_authenticate(user)
    assert api_client.get("/api/analytics/types/").status_code == 403
    api_client.force_authenticate(staff_user)
    for path in ("types", "users", "errors", "trends", "peak-hours"):
        assert api_client.get(f"/api/analytics/{path}/").status_code == 200, path
    bad = api_client.get("/api/analytics/trends/", {"metric": "nope"})
    assert bad.status_code == 400
    assert "metric" in bad.json()
    assert api_client.get("/api/analytics/trends/", {"range": "30d", "interval": "1m"}).status_code == 400
    assert api_client.get("/api/stats/", {"range": "2y"}).status_code == 400
    assert api_client.get("/api/stats/", {"from": "not a date"}).status_code == 400


# --- Property: the figures equal a reference computed in Python over the raw rows -------------

STATUSES = ["queued", "running", "completed", "failed", "cancelled"]
job_strategy = st.tuples(
    st.sampled_from(STATUSES),
    st.integers(min_value=0, max_value=3 * 24 * 3600),  # created, seconds before NOW
    st.integers(min_value=0, max_value=600),  # wait
    st.integers(min_value=0, max_value=7200),  # run time
    st.sampled_from(["demo", "export-jobs"]),
)


def _reference(jobs: list[Job], start: datetime, end: datetime) -> dict[str, Any]:
    """The figures computed the slow, obvious way: the cohort of jobs created in [start, end)."""
    created = [j for j in jobs if start <= j.created_at < end]
    durations = sorted(j.duration for j in created if j.duration is not None)
    waits = sorted(j.queue_wait for j in created if j.queue_wait is not None)

    def p95(values: list[float]) -> float | None:
        return values[math.ceil(0.95 * len(values)) - 1] if values else None

    completed = sum(j.status == "completed" for j in created)
    failed = sum(j.status == "failed" for j in created)
    return {
        "total": len(created),
        "counts": {s: sum(j.status == s for j in created) for s in STATUSES},
        "success_rate": round(100 * completed / (completed + failed), 2) if completed + failed else None,
        "duration_p95": p95(durations),
        "duration_n": len(durations),
        "duration_mean": round(sum(durations) / len(durations), 6) if durations else None,
        "wait_p95": p95(waits),
        "types": {t: sum(j.type == t for j in created) for t in {j.type for j in created}},
        "hours": sorted({j.created_at.replace(minute=0, second=0, microsecond=0).hour for j in created}),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(job_strategy, max_size=25),
    range_name=st.sampled_from(["1h", "1d", "7d", "all"]),
    folded=st.booleans(),
    changes=st.lists(st.tuples(st.integers(min_value=0, max_value=24), st.sampled_from(STATUSES)), max_size=5),
    walk=st.booleans(),
)
def test_stats_equal_a_reference_computed_over_the_raw_jobs(
    specs: list[tuple], range_name: str, folded: bool, changes: list[tuple[int, str]], walk: bool
) -> None:
    """Random histories, optionally folded into buckets and then changed (as the services stamp
    changes, with updated_at = now): the figures equal the reference over the raw rows. ``walk``:
    SQLite is sent down the (field, created_at) index for the p95 even for a few values."""
    stats_module.SQLITE_WALK_MIN = 0 if walk else WALK_MIN
    Job.objects.all().delete()
    RollupState.objects.all().delete()
    JobStatsHour.objects.all().delete()
    for status, created_s, wait, run, job_type in specs:
        created = NOW - timedelta(seconds=created_s)
        started = created + timedelta(seconds=wait) if status != "queued" else None
        finished = started + timedelta(seconds=run) if started and status != "running" else None
        make_job(status=status, created=created, started=started, finished=finished, type=job_type)
    if folded:
        rollup_fold(now=NOW - timedelta(seconds=1))
    ids = list(Job.objects.order_by("created_at", "id").values_list("pk", flat=True))
    for index, status in changes:
        if ids:
            Job.objects.filter(pk=ids[index % len(ids)]).update(status=status, updated_at=NOW)
    jobs = list(Job.objects.all())
    window = resolve_window(range_name=range_name, now=NOW)
    start = window.start or datetime.min.replace(tzinfo=NOW.tzinfo)

    stats = stats_summary(range_name=range_name, now=NOW)
    expected = _reference(jobs, start, NOW)

    assert stats["total"] == expected["total"]
    assert {s: stats["counts"][s] for s in STATUSES} == expected["counts"]
    assert stats["success_rate"] == expected["success_rate"]
    assert stats["duration"]["p95"] == expected["duration_p95"]
    assert stats["duration"]["count"] == expected["duration_n"]
    assert stats["duration"]["mean"] == (pytest.approx(expected["duration_mean"]) if expected["duration_n"] else None)
    assert stats["queue_wait"]["p95"] == expected["wait_p95"]
    assert {r["type"]: r["total"] for r in analytics_types(window=window)} == expected["types"]
    assert sorted(r["hour"] for r in analytics_peak_hours(window=window, limit=24)) == expected["hours"]


def test_top_users_from_the_buckets_follow_changes_after_the_fold() -> None:
    users: list[Any] = [UserFactory(username="alice"), UserFactory(username="bob")]
    bob = users[1]
    _history(users)
    rollup_fold(now=NOW - timedelta(seconds=1))
    # After the fold: bob's failed job completes, and bob gets two more jobs (stamped as the services do).
    Job.objects.filter(user_id=bob.pk, status="failed", created_at__gte=ago(days=1)).update(
        status="completed", updated_at=NOW
    )
    for minutes in (30, 90):
        job = make_job(status="queued", created=ago(minutes=minutes), user=bob)
        Job.objects.filter(pk=job.pk).update(updated_at=NOW)

    rows = analytics_users(window=DAY)

    assert [(r["username"], r["total"], r["completed"], r["failed"]) for r in rows] == [
        ("alice", 3, 2, 1),
        ("bob", 3, 1, 0),
    ]


# --- Property: trends, grouped errors and the Prometheus histogram from the buckets ------------

MESSAGES = ["", "ValueError: bad", "Zed: late", "Ünïcode: fail", "E" * 250 + "a", "E" * 250 + "b"]
bucket_job = st.tuples(
    st.sampled_from(STATUSES),
    st.integers(min_value=0, max_value=3 * 24 * 3600),  # created, seconds before NOW
    st.integers(min_value=0, max_value=600),  # wait
    st.one_of(st.sampled_from([0, 0.05, 0.1, 0.3, 1, 5, 60, 300, 3600, 3601]), st.integers(0, 7200)),  # run time
    st.sampled_from(["demo", "export-jobs"]),
    st.sampled_from(MESSAGES),
)
change = st.tuples(
    st.integers(min_value=0, max_value=30),
    st.sampled_from(STATUSES),
    st.integers(min_value=0, max_value=2 * 24 * 3600),  # a new finish time, seconds before NOW
)


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % step.total_seconds(), tz=UTC)


def _trend_reference(jobs: list[Job], start: datetime, end: datetime, metric: str, step: timedelta) -> list[dict]:
    first = _floor(start, step)
    field = "started_at" if metric == "queue_wait" else "finished_at"
    points = []
    for i in range(int((end - first) / step) + 1):
        low, high = first + i * step, first + (i + 1) * step
        sel = [j for j in jobs if (t := getattr(j, field)) is not None and max(low, start) <= t < min(high, end)]
        completed = sum(j.status == "completed" for j in sel)
        failed = sum(j.status == "failed" for j in sel)
        point: dict[str, Any] = {"time": low.isoformat()}
        if metric == "throughput":
            point.update(completed=completed, value=round(completed / (step.total_seconds() / 3600), 4))
        elif metric == "success_rate":
            rate = round(100 * completed / (completed + failed), 2) if completed + failed else None
            point.update(completed=completed, failed=failed, value=rate)
        else:
            values = [
                v for j in sel if (v := getattr(j, "queue_wait" if metric == "queue_wait" else "duration")) is not None
            ]
            point.update(count=len(values), value=round(sum(values) / len(values), 6) if values else None)
        points.append(point)
    return points


def _errors_reference(jobs: list[Job], start: datetime, end: datetime, limit: int) -> dict[str, Any]:
    failed = [j for j in jobs if j.status == "failed" and j.finished_at is not None and start <= j.finished_at < end]
    groups: dict[str, dict[str, Any]] = {}
    for j in failed:
        g = groups.setdefault(
            j.error[:200], {"message": j.error[:200], "count": 0, "last_seen": j.finished_at, "types": set()}
        )
        g["count"] += 1
        g["last_seen"] = max(g["last_seen"], j.finished_at)
        g["types"].add(j.type)
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], -g["last_seen"].timestamp(), g["message"]))[:limit]
    return {
        "total": len(failed),
        "groups": [{**g, "last_seen": g["last_seen"].isoformat(), "types": sorted(g["types"])} for g in ranked],
    }


def _histogram_reference(jobs: list[Job]) -> dict[str, list[int]]:
    """Per type, the finished jobs at or under each bound of the run-time histogram, and their number."""
    from monitoring.models import DURATION_BUCKETS

    out = {}
    for job_type in {j.type for j in jobs}:
        finished = ("completed", "failed", "cancelled")
        done = [d for j in jobs if j.type == job_type and j.status in finished and (d := j.duration) is not None]
        if done:
            out[job_type] = [*(sum(d <= bound for d in done) for bound in DURATION_BUCKETS), len(done)]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(bucket_job, max_size=30),
    range_name=st.sampled_from(["1h", "1d", "7d", "all"]),
    interval=st.sampled_from(["1m", "5m", "1h", "1d"]),
    folded=st.booleans(),
    changes=st.lists(change, max_size=6),
)
def test_trends_errors_and_histograms_equal_a_reference_computed_over_the_raw_jobs(
    specs: list[tuple], range_name: str, interval: str, folded: bool, changes: list[tuple[int, str, int]]
) -> None:
    """Random histories, optionally folded and then changed as the services stamp changes (a job
    retried long after it was created finishes again at another time, with updated_at = now)."""
    from monitoring import rollup
    from monitoring.analytics import TREND_INTERVALS, TREND_METRICS

    Job.objects.all().delete()
    RollupState.objects.all().delete()
    for status, created_s, wait, run, job_type, message in specs:
        created = NOW - timedelta(seconds=created_s)
        started = created + timedelta(seconds=wait) if status != "queued" else None
        finished = started + timedelta(seconds=run) if started and status != "running" else None
        make_job(status=status, created=created, started=started, finished=finished, type=job_type, error=message)
    if folded:
        rollup_fold(now=NOW - timedelta(seconds=1))
    ids = list(Job.objects.order_by("created_at", "id").values_list("pk", flat=True))
    for index, status, finish_back in changes:
        if not ids:
            break
        job = Job.objects.get(pk=ids[index % len(ids)])
        finished = NOW - timedelta(seconds=finish_back) if status in ("completed", "failed", "cancelled") else None
        started = finished - timedelta(seconds=7) if finished is not None else job.started_at
        Job.objects.filter(pk=job.pk).update(
            status=status,
            started_at=started,
            finished_at=finished,
            duration=7.0 if finished is not None else None,
            updated_at=NOW,
        )
    jobs = list(Job.objects.all())
    window = resolve_window(range_name=range_name, now=NOW)
    start = window.start or min((j.created_at for j in jobs), default=NOW)
    step = TREND_INTERVALS[interval]

    for metric in TREND_METRICS:
        if int((NOW - _floor(start, step)) / step) + 1 > 2000:
            with pytest.raises(BadRange):
                analytics_trends(window=window, metric=metric, interval=interval)
            continue
        got = analytics_trends(window=window, metric=metric, interval=interval)
        expected = _trend_reference(jobs, start, NOW, metric, step)
        assert [{k: v for k, v in p.items() if k != "value"} for p in got] == [
            {k: v for k, v in p.items() if k != "value"} for p in expected
        ], metric
        assert [p["value"] for p in got] == [
            pytest.approx(p["value"]) if p["value"] is not None else None for p in expected
        ], metric
    errors = analytics_errors(window=window, limit=2)
    since = window.start or datetime.min.replace(tzinfo=UTC)  # "all": no lower bound (trends: the first job)
    assert {k: errors[k] for k in ("total", "groups")} == _errors_reference(jobs, since, NOW, limit=2)
    # The statistics buckets' cumulative run-time columns (/metrics counts its histogram apart, as jobs finish).
    figures = ("duration_count", *rollup.HISTOGRAM)
    histogram: dict[str, list[int]] = {}
    for row in rollup.cohort(start=None, end=NOW + timedelta(microseconds=1), dims=("type", "status"), figures=figures):
        if row["status"] in ("completed", "failed", "cancelled") and row["duration_count"]:
            into = histogram.setdefault(row["type"], [0] * len(figures))
            for i, name in enumerate((*rollup.HISTOGRAM, "duration_count")):
                into[i] += row[name]
    assert histogram == _histogram_reference(jobs)


def test_error_groups_changed_after_the_fold_can_overtake_the_folded_ranking() -> None:
    def failed(message: str, hours: int) -> Job:  # each in an hour of its own
        return make_job(
            status="failed",
            created=ago(hours=hours),
            started=ago(hours=hours),
            finished=ago(hours=hours),
            error=message,
        )

    for i in range(4):
        failed("A", 10 + i)
    for i in range(3):
        failed("B", 20 + i)
    for i in range(2):
        failed("C", 30 + i)
    late = [make_job(status="completed", created=ago(hours=40 + i), error="C") for i in range(2)]
    rollup_fold(now=NOW - timedelta(seconds=1))
    # After the fold, two old jobs of C fail (stamped as the services do): C has 4, as many as A,
    # and A failed last, so A comes first; B (3) is out of the top 2.
    Job.objects.filter(pk__in=[j.pk for j in late]).update(status="failed", finished_at=ago(hours=39), updated_at=NOW)

    errors = analytics_errors(window=resolve_window(range_name="7d", now=NOW), limit=2)

    assert errors["total"] == 11
    assert [(g["message"], g["count"]) for g in errors["groups"]] == [("A", 4), ("C", 4)]
