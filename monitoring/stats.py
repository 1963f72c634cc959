"""The figures of ``GET /api/stats/`` (also broadcast as ``job-stats``).

Every figure is a direct query over the raw ``Job`` rows, shaped so that an index
answers it (see docs/monitoring.md for the measurements behind that choice). Definitions,
all over the half-open window ``[start, end)``:

- ``counts``: jobs *created* in the window, by their current status.
- ``finished``: jobs that *finished* in the window (``finished_at``), by status;
  ``success_rate`` is completed / (completed + failed) of those, in percent.
- ``duration``: mean and p95 of ``duration`` of the jobs finished in the window.
- ``queue_wait``: mean and p95 of ``queue_wait`` of the jobs *started* in the window.
- ``throughput_per_hour``: jobs completed in the window per hour of the window.
- p95 is the nearest-rank percentile: the ``ceil(0.95 n)``-th smallest value.

``today``, ``daily`` (last 7 days) and ``hourly`` (last 24 hours) do not depend on the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import ACTIVE_STATUSES, Job, JobStatus

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


def percentile(queryset: QuerySet[Job], field: str, fraction: float = 0.95, count: int | None = None) -> float | None:
    """Nearest-rank percentile of ``field`` over ``queryset`` (rows with NULL excluded).

    One COUNT and one ``ORDER BY field OFFSET k LIMIT 1``, which an index on ``field`` can answer
    without sorting the whole set; it is portable (SQLite has no percentile function).
    """
    qs = queryset.filter(**{f"{field}__isnull": False})
    n = qs.count() if count is None else count
    if n == 0:
        return None
    rank = math.ceil(fraction * n)
    value = qs.order_by(field).values_list(field, flat=True)[rank - 1 : rank].first()
    return float(value) if value is not None else None


def _mean_and_p95(queryset: QuerySet[Job], field: str) -> dict[str, float | None]:
    qs = queryset.filter(**{f"{field}__isnull": False})
    agg = qs.aggregate(n=Count("pk"), mean=Avg(field))
    n = agg["n"] or 0
    return {
        "count": n,
        "mean": round(agg["mean"], 6) if agg["mean"] is not None else None,
        "p95": percentile(qs, field, count=n) if n else None,
    }


def _status_counts(queryset: QuerySet[Job]) -> dict[str, int]:
    counts = {status: 0 for status in JobStatus.values}
    for row in queryset.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


def _local_midnight(moment: datetime) -> datetime:
    local = timezone.localtime(moment)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _today(now: datetime) -> dict[str, int]:
    midnight = _local_midnight(now)
    window = Window(name="today", start=midnight, end=now + timedelta(microseconds=1))
    finished = Job.objects.filter(_in("finished_at", window))
    return {
        "total": Job.objects.filter(_in("created_at", window)).count(),
        "completed": finished.filter(status=JobStatus.COMPLETED).count(),
        "failed": finished.filter(status=JobStatus.FAILED).count(),
    }


def _daily(now: datetime, days: int = 7) -> list[dict[str, Any]]:
    """Completed and failed per local day (by ``finished_at``), oldest first, today last."""
    today = _local_midnight(now)
    out = []
    for back in range(days - 1, -1, -1):
        day_start = timezone.localtime(today - timedelta(days=back)).replace(hour=0)
        # Build each bound from the local date so DST days are 23 or 25 hours long.
        day_start = timezone.make_aware(datetime.combine(day_start.date(), datetime.min.time()))
        next_day = timezone.make_aware(datetime.combine(day_start.date() + timedelta(days=1), datetime.min.time()))
        window = Window(name="day", start=day_start, end=next_day)
        counts = Job.objects.filter(_in("finished_at", window), status__in=[JobStatus.COMPLETED, JobStatus.FAILED])
        by_status = _status_counts(counts)
        out.append(
            {
                "date": day_start.date().isoformat(),
                "completed": by_status[JobStatus.COMPLETED],
                "failed": by_status[JobStatus.FAILED],
            }
        )
    return out


def _hourly(now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """The last 24 clock hours, the current (partial) hour last: created, completed, failed."""
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    end = current + timedelta(hours=1)
    buckets = {first + timedelta(hours=i): {"created": 0, "completed": 0, "failed": 0} for i in range(hours)}

    def hour_of(value: datetime) -> datetime:
        return value.astimezone(current.tzinfo).replace(minute=0, second=0, microsecond=0)

    window = Window(name="hourly", start=first, end=end)
    # At most 24 hours of rows: small enough to bucket in Python, portable across databases.
    for created in Job.objects.filter(_in("created_at", window)).values_list("created_at", flat=True).iterator():
        buckets[hour_of(created)]["created"] += 1
    finished = Job.objects.filter(_in("finished_at", window), status__in=[JobStatus.COMPLETED, JobStatus.FAILED])
    for finished_at, status in finished.values_list("finished_at", "status").iterator():
        if finished_at is not None:
            buckets[hour_of(finished_at)][status] += 1
    return [{"hour": hour.isoformat(), **counts} for hour, counts in buckets.items()]


def system_snapshot() -> dict[str, Any]:
    """Current CPU, memory and queue size: the latest sample if the monitor is running, else measured now."""
    from monitoring.metrics import latest_sample

    sample = latest_sample()
    queued = Job.objects.filter(status=JobStatus.QUEUED).count()
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
    created = Job.objects.filter(_in("created_at", window))
    finished = Job.objects.filter(_in("finished_at", window))
    counts = _status_counts(created)
    finished_counts = _status_counts(finished)
    done = finished_counts[JobStatus.COMPLETED] + finished_counts[JobStatus.FAILED]
    if window.start is not None:
        hours = (window.end - window.start).total_seconds() / 3600
    else:
        first = Job.objects.order_by("created_at").values_list("created_at", flat=True).first()
        hours = (window.end - first).total_seconds() / 3600 if first else 0.0
    return {
        "window": window.as_dict(),
        "generated_at": now.isoformat(),
        "counts": counts,
        "total": sum(counts.values()),
        "active": sum(counts[s] for s in ACTIVE_STATUSES),
        "finished": {s: finished_counts[s] for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)},
        "today": _today(now),
        "success_rate": round(100 * finished_counts[JobStatus.COMPLETED] / done, 2) if done else None,
        "duration": _mean_and_p95(finished, "duration"),
        "queue_wait": _mean_and_p95(Job.objects.filter(_in("started_at", window)), "queue_wait"),
        "throughput_per_hour": round(finished_counts[JobStatus.COMPLETED] / hours, 4) if hours > 0 else 0.0,
        "daily": _daily(now),
        "hourly": _hourly(now),
        "system": system_snapshot(),
    }
