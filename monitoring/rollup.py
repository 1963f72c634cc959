"""Pre-aggregated job statistics: bucket tables keyed by the hour a job was *created* in.

Why creation hour: a job's ``created_at`` never changes (a retry keeps the job), so every
change to a job touches rows of exactly one known creation hour, and that hour can be
recomputed exactly from the raw rows (an indexed range of ~1/720 of a month). Every bucket
table (``SPECS``) has that ``hour`` column, whatever else it is grouped by:

- ``COHORT`` (``JobStatsHour``): × type × status — counts, duration/queue-wait count and sum,
  and the cumulative run-time histogram of ``/metrics``;
- ``USERS`` (``JobStatsUserHour``): × owner × status — the top users;
- ``FINISHED`` (``JobFinishMinute``): × UTC minute of ``finished_at`` — completed, failed,
  duration count and sum: the throughput/success-rate/duration trends;
- ``STARTED`` (``JobStartMinute``): × UTC minute of ``started_at`` — queue-wait count and sum;
- ``ERRORS`` (``JobErrorHour``): × UTC hour of ``finished_at`` × type × the error's first 200
  characters — failed jobs and their latest ``finished_at``: the grouped errors.

Each table is read over a window of its own time field (``created_at``, ``finished_at`` or
``started_at``); its time column (``hour``, ``minute``, ``finished_hour``) holds that field
truncated, so whole steps of the window come from the table.

Maintenance (the monitor, ``rollup_fold`` every few seconds): every creation hour that holds a
job whose ``updated_at`` is at or after ``watermark - JOBADMIN_ROLLUP_MARGIN`` is recomputed in
every table (``INSERT … SELECT`` in the database), then the watermark moves to the fold's start.
The margin covers transactions that commit after a later one (ids and timestamps commit out of
order on PostgreSQL) and small clock differences between machines. Deleted jobs (retention, the
admin) leave no trace in ``updated_at``, so every ``JOBADMIN_ROLLUP_REBUILD`` seconds, and after
each purge, ``rollup_reconcile`` also recomputes the hours whose job count no longer matches
(one count over an index, and only if it differs one grouped count) instead of rebuilding
everything.

Reading (``_read``): whole steps of the window come from a table, except rows of a creation
hour with a job changed since ``watermark - margin``; those jobs, and those in the partial steps
at the window's edges, come from the raw rows. So a reader gets the exact figures as of now, not
as of the last fold — only a deletion since the last reconcile can show. Without a fold ever
having run, everything is raw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Count, F, FloatField, Max, Q, Sum, Value
from django.db.models.functions import Coalesce, Collate, Substr, TruncHour, TruncMinute
from django.utils import timezone

from jobs.models import Job, JobStatus
from monitoring.models import (
    DURATION_BUCKETS,
    JobErrorHour,
    JobFinishMinute,
    JobStartMinute,
    JobStatsHour,
    JobStatsUserHour,
    RollupState,
    duration_le_column,
)

STATE = "jobs"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
FIGURES = ("jobs", "duration_count", "duration_sum", "queue_wait_count", "queue_wait_sum")
HISTOGRAM = tuple(duration_le_column(bound) for bound in DURATION_BUCKETS)
ERROR_KEY_LENGTH = 200


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % step.total_seconds(), tz=UTC)


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floor = _floor(moment, step)
    return floor if floor == moment else floor + step


def floor_hour(moment: datetime) -> datetime:
    return _floor(moment, HOUR)


def _margin() -> timedelta:
    return timedelta(seconds=settings.JOBADMIN_ROLLUP_MARGIN)


def _fsum(name: str) -> Any:
    return Coalesce(Sum(name), Value(0.0), output_field=FloatField())


@dataclasses.dataclass(frozen=True)
class Spec:
    """One bucket table: how its rows are computed from the jobs, and by which time field it is read."""

    model: Any
    field: str  # the job's time field that windows are taken over
    column: str  # the table's column holding ``field`` truncated to ``step``
    step: timedelta
    columns: dict[str, Any]  # grouping column -> expression over the job (incl. "hour" and ``column``)
    figures: dict[str, Any]  # figure column -> aggregate over the job
    maxima: tuple[str, ...] = ()  # figures combined by max (the others add up)
    where: Q = dataclasses.field(default_factory=Q)  # which jobs the table holds


CREATED_HOUR = TruncHour("created_at", tzinfo=UTC)

COHORT = Spec(
    model=JobStatsHour,
    field="created_at",
    column="hour",
    step=HOUR,
    columns={"hour": CREATED_HOUR, "type": F("type"), "status": F("status")},
    figures={
        "jobs": Count("pk"),
        "duration_count": Count("duration"),
        "duration_sum": _fsum("duration"),
        "queue_wait_count": Count("queue_wait"),
        "queue_wait_sum": _fsum("queue_wait"),
        **{duration_le_column(bound): Count("pk", filter=Q(duration__lte=bound)) for bound in DURATION_BUCKETS},
    },
)
USERS = Spec(
    model=JobStatsUserHour,
    field="created_at",
    column="hour",
    step=HOUR,
    columns={"hour": CREATED_HOUR, "user": F("user_id"), "status": F("status")},
    figures={"jobs": Count("pk")},
    where=Q(user__isnull=False),
)
FINISHED = Spec(
    model=JobFinishMinute,
    field="finished_at",
    column="minute",
    step=MINUTE,
    columns={
        "hour": CREATED_HOUR,
        "minute": TruncMinute("finished_at", tzinfo=UTC),
        "finished_hour": TruncHour("finished_at", tzinfo=UTC),
    },
    figures={
        "completed": Count("pk", filter=Q(status=JobStatus.COMPLETED)),
        "failed": Count("pk", filter=Q(status=JobStatus.FAILED)),
        "duration_count": Count("duration"),
        "duration_sum": _fsum("duration"),
    },
    where=Q(finished_at__isnull=False),
)
STARTED = Spec(
    model=JobStartMinute,
    field="started_at",
    column="minute",
    step=MINUTE,
    columns={
        "hour": CREATED_HOUR,
        "minute": TruncMinute("started_at", tzinfo=UTC),
        "started_hour": TruncHour("started_at", tzinfo=UTC),
    },
    figures={"queue_wait_count": Count("queue_wait"), "queue_wait_sum": _fsum("queue_wait")},
    where=Q(started_at__isnull=False, queue_wait__isnull=False),
)
ERRORS = Spec(
    model=JobErrorHour,
    field="finished_at",
    column="finished_hour",
    step=HOUR,
    columns={
        "hour": CREATED_HOUR,
        "finished_hour": TruncHour("finished_at", tzinfo=UTC),
        "type": F("type"),
        "message": Substr("error", 1, ERROR_KEY_LENGTH),
    },
    figures={"jobs": Count("pk"), "last_seen": Max("finished_at")},
    maxima=("last_seen",),
    where=Q(status=JobStatus.FAILED, finished_at__isnull=False),
)
SPECS = (COHORT, USERS, FINISHED, STARTED, ERRORS)


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
        .annotate(hour=CREATED_HOUR)
        .values_list("hour", flat=True)
        .distinct()
    )
    return {floor_hour(hour) for hour in rows if hour is not None}


# --- maintenance ---------------------------------------------------------------------------


def _recompute(spec: Spec, jobs: Q) -> None:
    """Insert the rows of ``spec`` for the jobs matching ``jobs``: one ``INSERT … SELECT``, no round trip."""
    names = [*spec.columns, *spec.figures]
    query: Any = (
        Job.objects.filter(spec.where, jobs)
        .order_by()
        .annotate(**{f"b_{name}": expr for name, expr in spec.columns.items()})
        .values(*(f"b_{name}" for name in spec.columns))
        .annotate(**{f"b_{name}": agg for name, agg in spec.figures.items()})
    )
    try:
        sql, params = query.query.sql_with_params()
    except EmptyResultSet:  # the filter can match nothing (no hours): nothing to insert
        return
    qn = connection.ops.quote_name
    target = ", ".join(qn(spec.model._meta.get_field(name).column) for name in names)
    source = ", ".join(qn(f"b_{name}") for name in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(spec.model._meta.db_table)} ({target}) SELECT {source} FROM ({sql}) sub", params
        )


def rollup_rebuild(*, now: datetime | None = None) -> int:
    """Recompute every bucket table from the raw rows; returns the number of ``JobStatsHour`` rows."""
    now = now or timezone.now()
    with transaction.atomic():
        for spec in SPECS:
            spec.model.objects.all().delete()
            _recompute(spec, Q())
        RollupState.objects.update_or_create(name=STATE, defaults={"watermark": now, "rebuilt_at": now})
    return JobStatsHour.objects.count()


def _refresh(hours: set[datetime], now: datetime, **state: Any) -> None:
    """Recompute ``hours`` in every table and move the watermark to ``now`` (and ``state``), atomically."""
    with transaction.atomic():
        if hours:
            for spec in SPECS:
                spec.model.objects.filter(hour__in=list(hours)).delete()
                _recompute(spec, _hours_q(hours))
        RollupState.objects.filter(name=STATE).update(watermark=now, **state)


def rollup_fold(*, now: datetime | None = None) -> int:
    """Recompute the hours touched since the last fold; the first fold rebuilds. Returns hours recomputed."""
    now = now or timezone.now()
    state = RollupState.objects.filter(name=STATE).first()
    if state is None or state.watermark is None:
        rollup_rebuild(now=now)
        return -1
    hours = dirty_hours(state.watermark - _margin())
    _refresh(hours, now)
    return len(hours)


def deleted_hours(before: datetime) -> set[datetime]:
    """Creation hours before ``before`` whose jobs in the tables are more (or fewer) than in the jobs
    table: deletions.

    First one count over the ``created_at`` index against the sum of ``JobStatsHour``: equal, no
    hour lost a job (the usual case). Otherwise one grouped count per hour, compared hour by hour.
    A job added to an hour changes its ``updated_at`` too, so the fold takes care of it anyway.
    """
    raw_total = Job.objects.filter(created_at__lt=before).count()
    folded_total = JobStatsHour.objects.filter(hour__lt=before).aggregate(n=Coalesce(Sum("jobs"), 0))["n"]
    if raw_total == folded_total:
        return set()
    raw = dict(
        Job.objects.filter(created_at__lt=before)
        .order_by()
        .annotate(h=CREATED_HOUR)
        .values("h")
        .annotate(n=Count("pk"))
        .values_list("h", "n")
    )
    folded = dict(
        JobStatsHour.objects.filter(hour__lt=before)
        .order_by()
        .values("hour")
        .annotate(n=Sum("jobs"))
        .values_list("hour", "n")
    )
    raw = {floor_hour(hour): n for hour, n in raw.items()}
    folded = {floor_hour(hour): n for hour, n in folded.items()}
    return {hour for hour in raw.keys() | folded.keys() if raw.get(hour, 0) != folded.get(hour, 0)}


def rollup_reconcile(*, now: datetime | None = None) -> int:
    """A fold that also recomputes the hours that lost jobs (``deleted_hours``); returns hours recomputed.

    Instead of a full rebuild: deletions (retention, the admin) leave no ``updated_at`` behind.
    """
    now = now or timezone.now()
    state = RollupState.objects.filter(name=STATE).first()
    if state is None or state.watermark is None:
        rollup_rebuild(now=now)
        return -1
    since = state.watermark - _margin()
    # Hours from ``since`` on may hold jobs added since the last fold; a deletion there is found
    # by the next check, once the hour is older.
    hours = dirty_hours(since) | deleted_hours(floor_hour(since))
    _refresh(hours, now, rebuilt_at=now)
    return len(hours)


def rollup_rebuild_due(now: datetime) -> bool:
    """Whether ``rollup_reconcile`` is due: every ``JOBADMIN_ROLLUP_REBUILD`` seconds, and after a purge."""
    rebuilt = RollupState.objects.filter(name=STATE).values_list("rebuilt_at", flat=True).first()
    return rebuilt is None or (now - rebuilt).total_seconds() >= settings.JOBADMIN_ROLLUP_REBUILD


def jobs_purge_rebuild_batch(batch: int) -> int:
    """A purger that deletes nothing: after a purge run, check for deletions on the next fold."""
    RollupState.objects.filter(name=STATE).update(rebuilt_at=None)
    return 0


# --- reading -------------------------------------------------------------------------------


def _plan(spec: Spec, start: datetime | None, end: datetime) -> tuple[Q, Q | None]:
    """Which jobs to read raw, and which rows of the table to read, for ``spec.field`` in ``[start, end)``.

    Whole steps of the window come from the table, except rows of a creation hour with a job
    changed since ``watermark - margin``; those jobs, and those in the partial steps at the edges,
    are read raw. Each job of the window is counted exactly once.
    """
    window = Q(**{f"{spec.field}__lt": end}) & (Q(**{f"{spec.field}__gte": start}) if start is not None else Q())
    state = RollupState.objects.filter(name=STATE).values_list("watermark", flat=True).first()
    if state is None:
        return window, None
    first_full = _ceil(start, spec.step) if start is not None else None
    last_full = _floor(end, spec.step)
    if first_full is not None and first_full >= last_full:
        return window, None
    dirty = dirty_hours(state - _margin())
    # A plain OR of ranges, so that SQLite (and PostgreSQL) read index ranges, not the whole window.
    raw = Q(**{f"{spec.field}__gte": last_full, f"{spec.field}__lt": end})
    bucket_q = Q(**{f"{spec.column}__lt": last_full})
    if first_full is not None:
        raw |= Q(**{f"{spec.field}__gte": start, f"{spec.field}__lt": first_full})
        bucket_q &= Q(**{f"{spec.column}__gte": first_full})
    if spec.field == "created_at":  # a dirty hour inside the whole hours is a whole hour of the window
        dirty = {h for h in dirty if (first_full is None or h >= first_full) and h < last_full}
        raw |= _hours_q(dirty)
    elif dirty:
        raw |= window & _hours_q(dirty)
    if dirty:
        bucket_q &= ~Q(hour__in=list(dirty))
    return raw, bucket_q


def _raw_rows(spec: Spec, raw: Q, dims: tuple[str, ...], names: tuple[str, ...], where: Q | None) -> Any:
    raw_dims = {f"b_{d}": spec.columns[d] for d in dims}
    qs: Any = Job.objects.filter(spec.where, raw).order_by().annotate(**raw_dims)
    if where is not None:
        qs = qs.filter(where)
    return qs.values(*raw_dims).annotate(**{f"b_{name}": spec.figures[name] for name in names})


def _bucket_rows(spec: Spec, bucket_q: Q, dims: tuple[str, ...], names: tuple[str, ...], where: Q | None) -> Any:
    bucket_dims = {f"b_{d}": F(d) for d in dims}
    qs: Any = spec.model.objects.filter(bucket_q).order_by().annotate(**bucket_dims)
    if where is not None:
        qs = qs.filter(where)
    combine = {f"b_{name}": (Max(name) if name in spec.maxima else Sum(name)) for name in names}
    return qs.values(*bucket_dims).annotate(**combine)


def _merge(spec: Spec, keys: tuple[str, ...], names: tuple[str, ...], *sources: Iterable[dict[str, Any]]) -> list:
    """Rows of the same key added up (``spec.maxima``: the larger); each row: the keys and ``names``."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rows in sources:
        for row in rows:
            key = tuple(_normal(row[f"b_{d}"]) for d in keys)
            into = merged.get(key)
            if into is None:
                merged[key] = {name: row[f"b_{name}"] for name in names}
                continue
            for name in names:
                value = row[f"b_{name}"]
                if name not in spec.maxima:
                    into[name] += value or 0
                elif value is not None and (into[name] is None or value > into[name]):
                    into[name] = value
    return [{**dict(zip(keys, key, strict=True)), **values} for key, values in merged.items()]


def _read(
    spec: Spec,
    *,
    start: datetime | None,
    end: datetime,
    dims: tuple[str, ...],
    figures: Iterable[str] | None = None,
    where: Q | None = None,
) -> list[dict[str, Any]]:
    """Jobs of ``spec`` with ``spec.field`` in ``[start, end)``, grouped by ``dims``, exact as of now.

    ``dims`` are columns of the table. ``where`` filters on columns that the table and the jobs share
    by name, or on ``b_<column>`` (applied to the jobs as the table's expression, to the table as
    the column). Each row: the dims plus the figures (default: all of the table's).
    """
    names = tuple(figures) if figures is not None else tuple(spec.figures)
    raw, bucket_q = _plan(spec, start, end)
    sources = [_raw_rows(spec, raw, dims, names, where)]
    if bucket_q is not None:
        sources.append(_bucket_rows(spec, bucket_q, dims, names, where))
    return _merge(spec, dims, names, *sources)


def _normal(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def cohort(
    *,
    start: datetime | None,
    end: datetime,
    dims: tuple[str, ...],
    figures: Iterable[str] = FIGURES,
    where: Q | None = None,
) -> list[dict[str, Any]]:
    """Jobs created in ``[start, end)`` grouped by ``dims`` (of "hour", "type", "status"), exact as of now.

    Each row: the dims plus ``figures`` (default ``jobs``, ``duration_count``, ``duration_sum``,
    ``queue_wait_count``, ``queue_wait_sum``; also the ``HISTOGRAM`` columns). "hour" is the UTC
    creation hour.
    """
    return _read(COHORT, start=start, end=end, dims=dims, figures=figures, where=where)


def cohort_users(*, start: datetime | None, end: datetime) -> list[dict[str, Any]]:
    """Jobs with an owner created in ``[start, end)`` by ``user`` (id) and ``status``: ``jobs``."""
    return _read(USERS, start=start, end=end, dims=("user", "status"))


def finished_series(*, start: datetime, end: datetime, hourly: bool) -> list[dict[str, Any]]:
    """Jobs finished in ``[start, end)`` per UTC minute, or hour if ``hourly`` (``slot``): ``completed``,
    ``failed`` (by current status), ``duration_count`` and ``duration_sum``."""
    return _series(FINISHED, "finished_hour", start, end, hourly)


def started_series(*, start: datetime, end: datetime, hourly: bool) -> list[dict[str, Any]]:
    """Jobs started in ``[start, end)`` per UTC minute, or hour if ``hourly`` (``slot``): ``queue_wait_count``
    and ``queue_wait_sum``."""
    return _series(STARTED, "started_hour", start, end, hourly)


def _series(spec: Spec, hour_column: str, start: datetime, end: datetime, hourly: bool) -> list[dict[str, Any]]:
    # Grouped by a plain column: no truncation function per row (on SQLite, a Python call per row).
    column = hour_column if hourly else "minute"
    rows = _read(spec, start=start, end=end, dims=(column,))
    for row in rows:
        row["slot"] = row.pop(column)
    return rows


def _codepoint_order(name: str) -> Any:
    """``name`` compared by code point, as Python compares strings (not by the database's locale)."""
    return Collate(F(name), "BINARY" if connection.vendor == "sqlite" else "C")


def error_summary(*, start: datetime | None, end: datetime, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Failed jobs finished in ``[start, end)``: their number, and the ``limit`` largest groups by message
    (the error's first 200 characters) — ``message``, ``jobs``, ``last_seen``, ``types`` — ranked by
    jobs, then latest first, then message.

    The ranking runs in the database: only the table's top ``limit`` groups come back, and the
    table's rows of the messages that also have raw rows. That is enough: the raw rows only add
    to a group, so a group with no raw rows ranks no higher merged than in the table alone.
    """
    names = ("jobs", "last_seen")
    raw_q, bucket_q = _plan(ERRORS, start, end)
    raw = _merge(ERRORS, ("message",), names, _raw_rows(ERRORS, raw_q, ("message",), names, None))
    total = sum(row["jobs"] for row in raw)
    sources: list[Any] = [({f"b_{k}": v for k, v in row.items()} for row in raw)]
    if bucket_q is not None:
        total += ERRORS.model.objects.filter(bucket_q).aggregate(n=Coalesce(Sum("jobs"), 0))["n"]
        grouped = _bucket_rows(ERRORS, bucket_q, ("message",), names, None)
        top = list(grouped.order_by("-b_jobs", "-b_last_seen", _codepoint_order("b_message"))[:limit])
        seen = {row["b_message"] for row in top}
        also = [row["message"] for row in raw if row["message"] not in seen]
        sources += [top, grouped.filter(b_message__in=also) if also else []]
    groups = _merge(ERRORS, ("message",), names, *sources)
    ranked = sorted(groups, key=lambda g: (-g["jobs"], -g["last_seen"].timestamp(), g["message"]))[:limit]
    types: dict[str, set[str]] = {g["message"]: set() for g in ranked}
    if ranked:
        where = Q(b_message__in=list(types))
        for row in _read(ERRORS, start=start, end=end, dims=("message", "type"), figures=("jobs",), where=where):
            types[row["message"]].add(row["type"])
    return total, [{**g, "types": sorted(types[g["message"]])} for g in ranked]
