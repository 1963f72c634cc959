"""Pre-aggregated job statistics: hourly buckets by creation hour, type and status.

Why creation hour: a job's ``created_at`` never changes (a retry keeps the job), so every
change to a job touches exactly one known bucket — the hour it was created in — and that
hour can be recomputed exactly from the raw rows (an indexed range of ~1/720 of a month).

Maintenance (the monitor, ``rollup_fold`` every few seconds): every hour that holds a job
whose ``updated_at`` is at or after ``watermark - JOBADMIN_ROLLUP_MARGIN`` is recomputed,
then the watermark moves to the fold's start time. The margin covers transactions that
commit after a later one (ids and timestamps commit out of order on PostgreSQL) and small
clock differences between machines. Deleted jobs (retention, the admin) leave no trace in
``updated_at``, so ``rollup_rebuild`` recomputes everything every
``JOBADMIN_ROLLUP_REBUILD`` seconds.

Reading (``cohort``): whole clean hours come from the buckets; the partial hours at the
window's edges and every hour with a job changed since ``watermark - margin`` come from the
raw rows. So a reader gets the exact figures as of now, not as of the last fold — only a
deletion since the last rebuild can show. Without a fold ever having run, everything is raw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from jobs.models import Job
from monitoring.models import JobStatsHour, JobStatsUserHour, RollupState

STATE = "jobs"
HOUR = timedelta(hours=1)
FIGURES = ("jobs", "duration_count", "duration_sum", "queue_wait_count", "queue_wait_sum")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _margin() -> timedelta:
    return timedelta(seconds=settings.JOBADMIN_ROLLUP_MARGIN)


def _raw_aggregates() -> dict[str, Any]:
    return {
        "jobs": Count("pk"),
        "duration_count": Count("duration"),
        "duration_sum": Sum("duration"),
        "queue_wait_count": Count("queue_wait"),
        "queue_wait_sum": Sum("queue_wait"),
    }


def _hour_rows(hours: Q) -> list[JobStatsHour]:
    rows: Any = (
        Job.objects.filter(hours)
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "type", "status")
        .annotate(**_raw_aggregates())
    )
    return [
        JobStatsHour(
            hour=row["hour"],
            type=row["type"],
            status=row["status"],
            jobs=row["jobs"],
            duration_count=row["duration_count"],
            duration_sum=row["duration_sum"] or 0.0,
            queue_wait_count=row["queue_wait_count"],
            queue_wait_sum=row["queue_wait_sum"] or 0.0,
        )
        for row in rows
    ]


def _user_hour_rows(hours: Q) -> list[JobStatsUserHour]:
    rows: Any = (
        Job.objects.filter(hours, user__isnull=False)
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "user", "status")
        .annotate(jobs=Count("pk"))
    )
    return [JobStatsUserHour(hour=r["hour"], user=r["user"], status=r["status"], jobs=r["jobs"]) for r in rows]


def _hours_q(hours: Iterable[datetime]) -> Q:
    q = Q(pk__in=[])
    for hour in hours:
        q |= Q(created_at__gte=hour, created_at__lt=hour + HOUR)
    return q


def dirty_hours(since: datetime) -> set[datetime]:
    """Creation hours of the jobs changed at or after ``since`` (``job_updated`` index)."""
    rows = (
        Job.objects.filter(updated_at__gte=since)
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values_list("hour", flat=True)
        .distinct()
    )
    return {floor_hour(hour) for hour in rows if hour is not None}


def rollup_rebuild(*, now: datetime | None = None) -> int:
    """Recompute every bucket from the raw rows; returns the number of buckets."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = _hour_rows(Q())
        JobStatsHour.objects.all().delete()
        JobStatsHour.objects.bulk_create(rows, batch_size=5000)
        JobStatsUserHour.objects.all().delete()
        JobStatsUserHour.objects.bulk_create(_user_hour_rows(Q()), batch_size=5000)
        RollupState.objects.update_or_create(name=STATE, defaults={"watermark": now, "rebuilt_at": now})
    return len(rows)


def rollup_fold(*, now: datetime | None = None) -> int:
    """Recompute the hours touched since the last fold; the first fold rebuilds. Returns hours recomputed."""
    now = now or timezone.now()
    state = RollupState.objects.filter(name=STATE).first()
    if state is None or state.watermark is None:
        rollup_rebuild(now=now)
        return -1
    hours = dirty_hours(state.watermark - _margin())
    with transaction.atomic():
        if hours:
            rows = _hour_rows(_hours_q(hours))
            JobStatsHour.objects.filter(hour__in=list(hours)).delete()
            JobStatsHour.objects.bulk_create(rows, batch_size=5000)
            JobStatsUserHour.objects.filter(hour__in=list(hours)).delete()
            JobStatsUserHour.objects.bulk_create(_user_hour_rows(_hours_q(hours)), batch_size=5000)
        RollupState.objects.filter(name=STATE).update(watermark=now)
    return len(hours)


def rollup_rebuild_due(now: datetime) -> bool:
    rebuilt = RollupState.objects.filter(name=STATE).values_list("rebuilt_at", flat=True).first()
    return rebuilt is None or (now - rebuilt).total_seconds() >= settings.JOBADMIN_ROLLUP_REBUILD


def cohort(*, start: datetime | None, end: datetime, dims: tuple[str, ...]) -> list[dict[str, Any]]:
    """Jobs created in ``[start, end)`` grouped by ``dims`` (of "hour", "type", "status"), exact as of now.

    Each row: the dims plus ``jobs``, ``duration_count``, ``duration_sum``, ``queue_wait_count``,
    ``queue_wait_sum``. "hour" is the UTC creation hour.
    """
    return _cohort(
        start=start, end=end, dims=dims, model=JobStatsHour, figures=FIGURES, raw_aggregates=_raw_aggregates()
    )


def cohort_users(*, start: datetime | None, end: datetime) -> list[dict[str, Any]]:
    """Jobs with an owner created in ``[start, end)`` by ``user`` (id) and ``status``: ``jobs``."""
    return _cohort(
        start=start,
        end=end,
        dims=("user", "status"),
        model=JobStatsUserHour,
        figures=("jobs",),
        raw_aggregates={"jobs": Count("pk")},
        raw_filter=Q(user__isnull=False),
    )


def _cohort(
    *,
    start: datetime | None,
    end: datetime,
    dims: tuple[str, ...],
    model: Any,
    figures: tuple[str, ...],
    raw_aggregates: dict[str, Any],
    raw_filter: Q | None = None,
) -> list[dict[str, Any]]:
    state = RollupState.objects.filter(name=STATE).values_list("watermark", flat=True).first()
    raw: Q
    bucket_q: Q | None = None
    if state is None:
        raw = Q(created_at__lt=end) & (Q(created_at__gte=start) if start is not None else Q())
    else:
        first_full = ceil_hour(start) if start is not None else None
        last_full = floor_hour(end)
        if first_full is not None and first_full >= last_full:
            raw = Q(created_at__gte=start, created_at__lt=end)
        else:
            dirty = {
                h for h in dirty_hours(state - _margin()) if (first_full is None or h >= first_full) and h < last_full
            }
            raw = Q(created_at__gte=last_full, created_at__lt=end) | _hours_q(dirty)
            if start is not None and first_full is not None:
                raw |= Q(created_at__gte=start, created_at__lt=first_full)
            bucket_q = Q(hour__lt=last_full) & (Q(hour__gte=first_full) if first_full is not None else Q())
            if dirty:
                bucket_q &= ~Q(hour__in=list(dirty))
    merged: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: dict.fromkeys(figures, 0.0))
    raw_qs = Job.objects.filter(raw)
    if raw_filter is not None:
        raw_qs = raw_qs.filter(raw_filter)
    raw_qs = raw_qs.order_by()
    if "hour" in dims:
        raw_qs = raw_qs.annotate(hour=TruncHour("created_at", tzinfo=UTC))
    for row in raw_qs.values(*dims).annotate(**raw_aggregates):
        key = tuple(floor_hour(row[d]) if d == "hour" else row[d] for d in dims)
        for name in figures:
            merged[key][name] += row[name] or 0
    if bucket_q is not None:
        sums = {name: Sum(name) for name in figures}
        for row in model.objects.filter(bucket_q).order_by().values(*dims).annotate(**sums):
            key = tuple(floor_hour(row[d]) if d == "hour" else row[d] for d in dims)
            for name in figures:
                merged[key][name] += row[name] or 0
    out = []
    for key, values in merged.items():
        row_out: dict[str, Any] = dict(zip(dims, key, strict=True))
        for name in figures:
            row_out[name] = values[name] if name.endswith("_sum") else int(values[name])
        out.append(row_out)
    return out


def jobs_purge_rebuild_batch(batch: int) -> int:
    """A purger that deletes nothing: after a purge run, rebuild on the next fold (deletions)."""
    RollupState.objects.filter(name=STATE).update(rebuilt_at=None)
    return 0
