"""System metric sampling (the monitor loop) and the metric time series read back by the API."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Max
from django.utils import timezone

from jobs.models import JobStatus
from jobs.selectors import (
    job_active_count,
    job_counts_per_queue,
    jobs_finished_count,
    jobs_finished_counts_by_status,
    queue_names,
)
from monitoring.models import MetricSample

# The live layer's relay stores its lag here (milliseconds, float), see docs/monitoring.md.
EVENT_LAG_CACHE_KEY = "monitoring:event_lag_ms"
# Open websocket connections over all web processes (each hub stores its own count with a TTL
# and the sum here, see live.relay.ws_connections_store).
WS_CONNECTIONS_CACHE_KEY = "monitoring:ws_connections"
MONITOR_HEARTBEAT_CACHE_KEY = "monitoring:monitor_heartbeat"

INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def latest_sample() -> MetricSample | None:
    return MetricSample.objects.order_by("-sampled_at").first()


def live_workers() -> int:
    """Worker processes of every django-q2 cluster whose stats are in the (shared) cache."""
    from django_q.status import Stat

    try:
        return sum(len(stat.workers) for stat in Stat.get_all())
    except Exception:  # a cache that is down means no worker is known alive
        return 0


def live_clusters() -> list[dict[str, Any]]:
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception:
        return []
    return [
        {"cluster": str(stat.cluster_id), "host": stat.host, "status": stat.status, "workers": len(stat.workers)}
        for stat in stats
    ]


def queue_depth() -> dict[str, int]:
    return {**dict.fromkeys(queue_names(), 0), **job_counts_per_queue(statuses=[JobStatus.QUEUED])}


def failure_rate(*, since: datetime, until: datetime) -> float | None:
    """Percent of the jobs that completed or failed in ``[since, until)`` that failed."""
    counts = jobs_finished_counts_by_status(since=since, until=until, statuses=[JobStatus.COMPLETED, JobStatus.FAILED])
    done = counts.get(JobStatus.COMPLETED, 0) + counts.get(JobStatus.FAILED, 0)
    return round(100 * counts.get(JobStatus.FAILED, 0) / done, 2) if done else None


def event_lag_ms() -> float | None:
    value = cache.get(EVENT_LAG_CACHE_KEY)
    return float(value) if value is not None else None


_cpu_primed = False


def _cpu_percent() -> float:
    """CPU use since the previous call in this process; the very first call measures 0.1 s instead."""
    global _cpu_primed
    if not _cpu_primed:
        _cpu_primed = True
        return float(psutil.cpu_percent(interval=0.1))
    return float(psutil.cpu_percent(interval=None))


def metrics_sample(*, now: datetime | None = None) -> MetricSample:
    """Measure the system and the job tables now and store one sample."""
    now = now or timezone.now()
    depth = queue_depth()
    disk = psutil.disk_usage(str(settings.JOBADMIN_DATA_DIR))
    load = os.getloadavg()
    return MetricSample.objects.create(
        sampled_at=now,
        cpu_percent=_cpu_percent(),
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=disk.percent,
        load_1=load[0],
        load_5=load[1],
        load_15=load[2],
        queued_jobs=sum(depth.values()),
        queue_depth=depth,
        running_jobs=job_active_count(),
        live_workers=live_workers(),
        jobs_per_minute=jobs_finished_count(since=now - timedelta(minutes=1), until=now + timedelta(microseconds=1)),
        failure_rate=failure_rate(since=now - timedelta(minutes=5), until=now + timedelta(microseconds=1)),
        event_lag_ms=event_lag_ms(),
    )


SERIES_FIELDS = (
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load_1",
    "queued_jobs",
    "running_jobs",
    "live_workers",
    "jobs_per_minute",
    "failure_rate",
    "event_lag_ms",
)


def metrics_series(*, interval: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Samples in ``[start, end)`` averaged per ``interval`` bucket (aligned to the epoch), oldest first.

    ``event_lag_ms`` is the bucket's maximum, the others its mean; ``samples`` is how many were averaged.
    """
    step = INTERVALS[interval].total_seconds()
    buckets: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = MetricSample.objects.filter(sampled_at__gte=start, sampled_at__lt=end).values_list(
        "sampled_at", *SERIES_FIELDS
    )
    for row in rows.iterator():
        key = int(row[0].timestamp() // step)
        for name, value in zip(SERIES_FIELDS, row[1:], strict=True):
            if value is not None:
                buckets[key][name].append(float(value))
        buckets[key]["_n"].append(1.0)
    out = []
    for key in sorted(buckets):
        values = buckets[key]
        point: dict[str, Any] = {"time": datetime.fromtimestamp(key * step, tz=start.tzinfo).isoformat()}
        point["samples"] = len(values["_n"])
        for name in SERIES_FIELDS:
            series = values.get(name)
            if not series:
                point[name] = None
            elif name == "event_lag_ms":
                point[name] = max(series)
            else:
                point[name] = round(sum(series) / len(series), 4)
        out.append(point)
    return out


def metrics_window_value(*, field: str, since: datetime, until: datetime, how: str = "avg") -> float | None:
    agg = MetricSample.objects.filter(sampled_at__gte=since, sampled_at__lt=until, **{f"{field}__isnull": False})
    value = agg.aggregate(v=Max(field) if how == "max" else Avg(field))["v"]
    return float(value) if value is not None else None


def metrics_purge_batch(batch: int, *, days: int | None = None) -> int:
    """Retention: delete up to ``batch`` samples older than ``JOBADMIN_METRICS_RETENTION_DAYS``."""
    cutoff = timezone.now() - timedelta(days=days if days is not None else settings.JOBADMIN_METRICS_RETENTION_DAYS)
    ids = list(MetricSample.objects.filter(sampled_at__lt=cutoff).values_list("pk", flat=True)[:batch])
    if ids:
        MetricSample.objects.filter(pk__in=ids).delete()
    return len(ids)
