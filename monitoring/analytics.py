"""``/api/analytics/...``: breakdowns over a window (same ranges as ``/api/stats/``, default 7d).

Definitions follow ``monitoring.stats``: a job belongs to a window by ``created_at`` for
"how many were submitted" figures and by ``finished_at`` for outcome and duration figures.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, tzinfo
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.models import JobStatus
from jobs.selectors import job_first_created_at, jobs_failed_latest, jobs_finished_by_type
from monitoring import rollup
from monitoring.stats import BadRange, Window

TREND_METRICS = ("throughput", "success_rate", "duration", "queue_wait")
TREND_INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
MAX_TREND_POINTS = 2000


def _rate(completed: int, failed: int) -> float | None:
    done = completed + failed
    return round(100 * completed / done, 2) if done else None


# The health grade of a job type (the seeds' Story 5.1; docs/monitoring.md, "Per-type health"):
# the error rate (failed of finished, %) and the processing rate (items a second of run time).
# Best grade first, each with the most errors (%) and the fewest items a second it allows; a type
# that meets none is "poor". Data, so the analytics page states the very rule the API applies.
GRADE_RULES: tuple[tuple[str, float, float], ...] = (
    ("excellent", 1, 50),
    ("good", 5, 10),
    ("fair", 10, 0),
)
GRADES = ("poor", *reversed([grade for grade, _, _ in GRADE_RULES]))


def health_grade(*, error_rate: float | None, items_per_second: float | None) -> str | None:
    """``poor`` over 10 % errors; ``fair`` over 5 % or under 10 items/s; ``good`` over 1 % or under
    50 items/s; else ``excellent`` (``GRADE_RULES``). None before anything finished. A type that
    counts no items (no ``total_items``) is graded on its error rate alone."""
    if error_rate is None:
        return None
    rate = float("inf") if items_per_second is None else items_per_second
    for grade, max_error_rate, min_items_per_second in GRADE_RULES:
        if error_rate <= max_error_rate and rate >= min_items_per_second:
            return grade
    return "poor"


def _quantile(buckets: list[tuple[float, int]], count: int, fraction: float) -> float | None:
    """Like Prometheus' ``histogram_quantile``: linear within the bucket the rank falls in
    (``buckets``: cumulative counts at each upper bound); past the last bound, that bound."""
    if not count:
        return None
    rank = fraction * count
    lower_bound, lower_count = 0.0, 0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            inside = cumulative - lower_count
            share = (rank - lower_count) / inside if inside else 1.0
            return round(lower_bound + (bound - lower_bound) * share, 3)
        lower_bound, lower_count = bound, cumulative
    return buckets[-1][0] if buckets else None


def analytics_types(*, window: Window) -> list[dict[str, Any]]:
    """Per job type, the jobs created in the window: by outcome, success rate, mean and p95 run
    time, throughput, items a second, the health grade and the latest failure."""
    histogram = [(bound, rollup.duration_le_column(bound)) for bound in rollup.DURATION_BUCKETS]
    per_type: dict[str, dict[str, Any]] = {}
    figures = (*rollup.FIGURES, *(column for _, column in histogram))
    for row in rollup.cohort(start=window.start, end=window.end, dims=("type", "status"), figures=figures):
        t = per_type.setdefault(
            row["type"],
            {
                "type": row["type"],
                "total": 0,
                **dict.fromkeys(JobStatus.values, 0),
                "duration_n": 0,
                "duration_sum": 0.0,
                "le": dict.fromkeys((column for _, column in histogram), 0),
            },
        )
        t["total"] += row["jobs"]
        t[row["status"]] += row["jobs"]
        t["duration_n"] += row["duration_count"]
        t["duration_sum"] += row["duration_sum"]
        for _, column in histogram:
            t["le"][column] += row[column] or 0
    finished = jobs_finished_by_type(since=window.start, until=window.end)
    hours = _window_hours(window)
    out = []
    for t in per_type.values():
        n, total, le = t.pop("duration_n"), t.pop("duration_sum"), t.pop("le")
        t["active"] = t.pop(JobStatus.RUNNING) + t.pop(JobStatus.PAUSED)
        t["success_rate"] = _rate(t[JobStatus.COMPLETED], t[JobStatus.FAILED])
        t["duration_mean"] = round(total / n, 6) if n else None
        t["duration_p95"] = _quantile([(bound, le[column]) for bound, column in histogram], n, 0.95)
        t["throughput_per_hour"] = round(t[JobStatus.COMPLETED] / hours, 3) if hours else None
        done = finished.get(t["type"], {"items": 0, "seconds": 0.0, "last_failure": None})
        t["items_per_second"] = round(done["items"] / done["seconds"], 3) if done["items"] and done["seconds"] else None
        rate = t["success_rate"]
        t["grade"] = health_grade(
            error_rate=None if rate is None else 100 - rate, items_per_second=t["items_per_second"]
        )
        failure = done["last_failure"]
        t["last_failure"] = failure and {
            **failure,
            "id": str(failure["id"]),
            "finished_at": failure["finished_at"].isoformat(),
        }
        out.append(t)
    return sorted(out, key=lambda r: (-r["total"], r["type"]))


def _window_hours(window: Window) -> float:
    start = window.start or job_first_created_at() or window.end
    return max((window.end - start).total_seconds() / 3600, 1 / 60)


def analytics_users(*, window: Window, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` users who created the most jobs in the window (ties by user id), from the buckets."""
    per_user: dict[int, dict[str, Any]] = {}
    for row in rollup.cohort_users(start=window.start, end=window.end):
        u = per_user.setdefault(row["user"], {"user": row["user"], "total": 0, "completed": 0, "failed": 0})
        u["total"] += row["jobs"]
        if row["status"] in (JobStatus.COMPLETED, JobStatus.FAILED):
            u[row["status"]] += row["jobs"]
    rows = sorted(per_user.values(), key=lambda u: (-u["total"], u["user"]))[:limit]
    names = dict(get_user_model().objects.filter(pk__in=[r["user"] for r in rows]).values_list("pk", "username"))
    return [
        {**row, "username": names.get(row["user"], ""), "success_rate": _rate(row["completed"], row["failed"])}
        for row in rows
    ]


def analytics_errors(*, window: Window, limit: int = 20, recent: int = 10) -> dict[str, Any]:
    """Failed jobs finished in the window, grouped by the first 200 characters of their error.

    From the error buckets (``rollup.ERRORS``), ranked in the database (see ``rollup.error_summary``).
    """
    total, ranked = rollup.error_summary(start=window.start, end=window.end, limit=limit)
    latest = jobs_failed_latest(since=window.start, until=window.end, limit=recent)
    return {
        "total": total,
        "groups": [
            {
                "message": g["message"],
                "count": g["jobs"],
                "last_seen": g["last_seen"].isoformat() if g["last_seen"] else None,
                "types": g["types"],
            }
            for g in ranked
        ],
        "recent": [
            {**row, "id": str(row["id"]), "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None}
            for row in latest
        ],
    }


def _bucket_start(moment: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - (epoch % seconds), tz=moment.tzinfo)


def analytics_trends(*, window: Window, metric: str, interval: str) -> list[dict[str, Any]]:
    """One point per ``interval`` bucket (aligned to the epoch in UTC) of the window, oldest first.

    throughput: jobs completed in the bucket (and per hour); success_rate: completed / (completed +
    failed) finished in the bucket; duration: mean run time of jobs finished in the bucket;
    queue_wait: mean wait of jobs started in the bucket. Empty buckets are included (value null or 0).
    From the per-minute buckets of ``monitoring.rollup`` (finished / started minute), exact.
    """
    if metric not in TREND_METRICS:
        raise BadRange(f"metric: must be one of {', '.join(TREND_METRICS)}")
    if interval not in TREND_INTERVALS:
        raise BadRange(f"interval: must be one of {', '.join(TREND_INTERVALS)}")
    step = TREND_INTERVALS[interval]
    start = window.start
    if start is None:
        first = job_first_created_at()
        start = first or window.end
    first_bucket = _bucket_start(start, step)
    points = int((window.end - first_bucket) / step) + 1
    if points > MAX_TREND_POINTS:
        raise BadRange(f"interval: {interval} over this range gives {points} points (at most {MAX_TREND_POINTS})")
    if metric == "queue_wait":
        rows = rollup.started_series(start=start, end=window.end, hourly=step >= rollup.HOUR)
        n_name, total_name = "queue_wait_count", "queue_wait_sum"
    else:
        rows = rollup.finished_series(start=start, end=window.end, hourly=step >= rollup.HOUR)
        n_name, total_name = "duration_count", "duration_sum"
    acc: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        # Rows are per UTC minute or hour; 5m adds up five minutes, 1d twenty-four hours.
        key = _bucket_start(row["slot"], step)
        for name in (n_name, total_name, "completed", "failed"):
            acc[key][name] += row.get(name) or 0
    out = []
    hours = step.total_seconds() / 3600
    for i in range(points):
        key = first_bucket + i * step
        a = acc.get(key, {})
        point: dict[str, Any] = {"time": key.isoformat()}
        if metric == "throughput":
            point["completed"] = int(a.get("completed", 0))
            point["value"] = round(a.get("completed", 0) / hours, 4)
        elif metric == "success_rate":
            point["completed"] = int(a.get("completed", 0))
            point["failed"] = int(a.get("failed", 0))
            point["value"] = _rate(point["completed"], point["failed"])
        else:
            n = int(a.get(n_name, 0))
            point["count"] = n
            point["value"] = round(a[total_name] / n, 6) if n else None
        out.append(point)
    return out


def analytics_peak_hours(*, window: Window, limit: int = 5, zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """The ``limit`` hours of the day (0-23 in ``zone``, default the current time zone) in which the
    most jobs were created. The rows are UTC hours; each is counted in the hour of ``zone`` it
    falls in, so a zone an hour off UTC by a fraction (India) counts it in the hour it starts in."""
    per_hour: dict[int, int] = defaultdict(int)
    for row in rollup.cohort(start=window.start, end=window.end, dims=("hour",)):
        per_hour[timezone.localtime(row["hour"], zone).hour] += row["jobs"]
    ranked = sorted(per_hour.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{"hour": hour, "count": count} for hour, count in ranked if count]
