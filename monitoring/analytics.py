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
from jobs.selectors import job_first_created_at, jobs_failed_latest
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


def analytics_types(*, window: Window) -> list[dict[str, Any]]:
    """Per job type, the jobs created in the window: by outcome, success rate and mean run time."""
    per_type: dict[str, dict[str, Any]] = {}
    for row in rollup.cohort(start=window.start, end=window.end, dims=("type", "status")):
        t = per_type.setdefault(
            row["type"],
            {
                "type": row["type"],
                "total": 0,
                **dict.fromkeys(JobStatus.values, 0),
                "duration_n": 0,
                "duration_sum": 0.0,
            },
        )
        t["total"] += row["jobs"]
        t[row["status"]] += row["jobs"]
        t["duration_n"] += row["duration_count"]
        t["duration_sum"] += row["duration_sum"]
    out = []
    for t in per_type.values():
        n, total = t.pop("duration_n"), t.pop("duration_sum")
        t["active"] = t.pop(JobStatus.RUNNING) + t.pop(JobStatus.PAUSED)
        t["success_rate"] = _rate(t[JobStatus.COMPLETED], t[JobStatus.FAILED])
        t["duration_mean"] = round(total / n, 6) if n else None
        out.append(t)
    return sorted(out, key=lambda r: (-r["total"], r["type"]))


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
