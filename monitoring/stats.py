"""The figures of ``GET /api/stats/`` (also broadcast as ``job-stats``).

A job belongs to a window by its ``created_at`` (a cohort): every figure over the half-open
window ``[start, end)`` is about the jobs *submitted* in it, whatever happened to them since:

- ``counts``: by current status; ``total``, ``active``.
- ``finished``: completed, failed and cancelled among them; ``success_rate`` is
  completed / (completed + failed), in percent (null when none finished).
- ``duration``: count, mean and p95 of the run time of those that finished;
  ``queue_wait``: the same of the wait before their first start.
- ``throughput_per_hour``: completed / hours of the window ("all": since the first job).
- p95 is the nearest-rank percentile: the ``ceil(0.95 n)``-th smallest value.

``today`` (jobs created since local midnight), ``daily`` (the last 7 local days) and
``hourly`` (the last 24 clock hours, UTC) are cohorts too and do not depend on the range.
Counts, sums and means come from ``monitoring.rollup`` (hourly buckets corrected to be exact
as of now); the two p95 are one index-only scan each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, F, Func, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import Job, JobStatus
from jobs.selectors import active_in, job_first_created_at, job_queued_count
from monitoring import rollup

RANGES: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}


class BadRange(ValueError):
    """An unknown range name or an unreadable/backwards from/to."""


@dataclass(frozen=True)
class Window:
    name: str
    start: datetime | None  # None: since the beginning
    end: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"range": self.name, "from": _iso(self.start), "to": _iso(self.end)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed: datetime | None = value
    else:
        parsed = parse_datetime(str(value))
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                raise BadRange(f"{field}: not an ISO 8601 date/time: {value!r}") from None
    assert parsed is not None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def resolve_window(
    *, range_name: str = "1d", start: Any = None, end: Any = None, now: datetime | None = None
) -> Window:
    """``from``/``to`` win over ``range``; ``to`` alone ends a named range there."""
    now = now or timezone.now()
    end_dt = _parse(end, "to") if end not in (None, "") else now
    if start not in (None, ""):
        start_dt = _parse(start, "from")
        if start_dt > end_dt:
            raise BadRange("from: must not be after to")
        return Window(name="custom", start=start_dt, end=end_dt)
    if range_name not in RANGES:
        raise BadRange(f"range: must be one of {', '.join(RANGES)}")
    delta = RANGES[range_name]
    return Window(name=range_name, start=end_dt - delta if delta else None, end=end_dt)


def _in(field: str, window: Window) -> Q:
    q = Q(**{f"{field}__lt": window.end})
    if window.start is not None:
        q &= Q(**{f"{field}__gte": window.start})
    return q


# From this many values on, SQLite is kept off the ``created_at`` index for the p95 (see ``percentile``).
SQLITE_WALK_MIN = 5_000


def percentile(window: Window, field: str, *, count: int, fraction: float = 0.95) -> float | None:
    """Nearest-rank percentile of ``field`` over the jobs created in ``window``, given ``count`` non-null values.

    Walks the ``(field, created_at)`` index from the top, so the p95 of a million rows reads
    5% of the index instead of sorting the set; portable (SQLite has no percentile function).
    SQLite's planner has no range statistics and reads a bounded window through the
    ``created_at`` index and sorts it (1.3 s for 30 days of a million jobs): from
    ``SQLITE_WALK_MIN`` values on, ``+created_at`` keeps it off that index, so it walks
    ``(field, created_at)`` too; below, sorting the window is the cheaper plan.
    """
    if count <= 0:
        return None
    rank = math.ceil(fraction * count)
    offset = count - rank
    values = Job.objects.filter(**{f"{field}__isnull": False})
    if connection.vendor == "sqlite" and count >= SQLITE_WALK_MIN:
        plus = Func(F("created_at"), template="+%(expressions)s", output_field=DateTimeField())
        values = values.annotate(created=plus).filter(_in("created", window))
    else:
        values = values.filter(_in("created_at", window))
    value = values.order_by(F(field).desc()).values_list(field, flat=True)[offset : offset + 1].first()
    return float(value) if value is not None else None


def _summarise(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fold cohort rows (any dims incl. status) into counts and sums."""
    counts = dict.fromkeys(JobStatus.values, 0)
    totals = dict.fromkeys(rollup.FIGURES, 0.0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + row["jobs"]
        for name in rollup.FIGURES:
            totals[name] += row[name]
    return {"counts": counts, **totals}


def _mean(total: float, n: float) -> float | None:
    return round(total / n, 6) if n else None


def _rate(completed: int, failed: int) -> float | None:
    done = completed + failed
    return round(100 * completed / done, 2) if done else None


def _local_midnight(moment: datetime) -> datetime:
    local = timezone.localtime(moment)
    return timezone.make_aware(datetime.combine(local.date(), datetime.min.time()))


def _series(now: datetime) -> dict[str, Any]:
    """``today``, ``daily`` and ``hourly`` from one cohort query over the last 7 days."""
    midnight = _local_midnight(now)
    first_day = timezone.make_aware(datetime.combine(midnight.date() - timedelta(days=6), datetime.min.time()))
    current = rollup.floor_hour(now)
    first_hour = current - timedelta(hours=23)
    end = now + timedelta(microseconds=1)
    rows = rollup.cohort(start=min(first_day, first_hour), end=end, dims=("hour", "status"))
    days = {
        (midnight.date() - timedelta(days=back)).isoformat(): {"completed": 0, "failed": 0} for back in range(6, -1, -1)
    }
    hours = {first_hour + timedelta(hours=i): {"created": 0, "completed": 0, "failed": 0} for i in range(24)}
    today = {"total": 0, "completed": 0, "failed": 0}
    for row in rows:
        hour, status, n = row["hour"], row["status"], row["jobs"]
        day = timezone.localtime(hour).date().isoformat()
        if day in days and status in (JobStatus.COMPLETED, JobStatus.FAILED):
            days[day][status] += n
        if hour in hours:
            hours[hour]["created"] += n
            if status in (JobStatus.COMPLETED, JobStatus.FAILED):
                hours[hour][status] += n
        if day == midnight.date().isoformat():
            today["total"] += n
            if status in (JobStatus.COMPLETED, JobStatus.FAILED):
                today[status] += n
    return {
        "today": today,
        "daily": [{"date": day, **figures} for day, figures in days.items()],
        "hourly": [{"hour": hour.isoformat(), **figures} for hour, figures in hours.items()],
    }


def system_snapshot() -> dict[str, Any]:
    """Current CPU, memory and queue size: the latest sample if the monitor is running, else measured now."""
    from monitoring.metrics import latest_sample

    sample = latest_sample()
    queued = job_queued_count()
    if sample is not None:
        return {
            "cpu_percent": sample.cpu_percent,
            "memory_percent": sample.memory_percent,
            "queue_size": queued,
            "sampled_at": sample.sampled_at.isoformat(),
        }
    import psutil

    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
        "queue_size": queued,
        "sampled_at": None,
    }


def stats_summary(*, range_name: str = "1d", start: Any = None, end: Any = None, now: datetime | None = None) -> dict:
    """The body of ``GET /api/stats/`` (and of the ``job-stats`` websocket message).

    Raises ``BadRange`` for an unknown range or unreadable ``from``/``to``.
    """
    now = now or timezone.now()
    window = resolve_window(range_name=range_name, start=start, end=end, now=now)
    summary = _summarise(rollup.cohort(start=window.start, end=window.end, dims=("status",)))
    counts: dict[str, int] = summary["counts"]
    duration_n, wait_n = int(summary["duration_count"]), int(summary["queue_wait_count"])
    if window.start is not None:
        hours = (window.end - window.start).total_seconds() / 3600
    else:
        first = job_first_created_at()
        hours = (window.end - first).total_seconds() / 3600 if first else 0.0
    completed, failed = counts[JobStatus.COMPLETED], counts[JobStatus.FAILED]
    return {
        "window": window.as_dict(),
        "generated_at": now.isoformat(),
        "counts": counts,
        "total": sum(counts.values()),
        "active": active_in(counts),
        "finished": {s: counts[s] for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)},
        "success_rate": _rate(completed, failed),
        "duration": {
            "count": duration_n,
            "mean": _mean(summary["duration_sum"], duration_n),
            "p95": percentile(window, "duration", count=duration_n),
        },
        "queue_wait": {
            "count": wait_n,
            "mean": _mean(summary["queue_wait_sum"], wait_n),
            "p95": percentile(window, "queue_wait", count=wait_n),
        },
        "throughput_per_hour": round(completed / hours, 4) if hours > 0 else 0.0,
        **_series(now),
        "system": system_snapshot(),
    }
