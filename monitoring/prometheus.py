"""``GET /metrics`` in the Prometheus text exposition format (0.0.4), written by ``prometheus_client``.

Every value is read at scrape time from the database (and the cache for the live gauges);
nothing is kept in process memory, so any web process answers the same, and a restart changes
nothing. Who may scrape is ``jobs.policy.may_scrape_metrics``.

- Counters (``*_total`` and the run-time histogram) come from ``jobs.counters``: incremented in
  the transaction of each change, never purged, so they only grow — ``rate()`` and
  ``increase()`` over them are exact across purges and restarts.
- Gauges say what is now (queues, workers, the retained history, open alerts, the host).
- Every label value that is known is present, at 0 if nothing happened: every registered job
  type with every finished status, every queue, every alert rule and severity.
- Base units: seconds, and ratios (0–1) instead of percents; no value is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.utils import floatToGoString

from jobs import counters
from jobs.models import ACTIVE_STATUSES, DURATION_BUCKETS, FINISHED_STATUSES, JobStatus, Queue
from jobs.registry import all_job_types
from jobs.selectors import job_counts_per_queue
from monitoring import metrics, rollup
from monitoring.models import OPEN_STATUSES, Alert, AlertRule, Severity

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def websocket_connections() -> int:
    value = cache.get(metrics.WS_CONNECTIONS_CACHE_KEY)
    return max(int(value), 0) if value is not None else 0


def _counters(types: list[str]) -> Iterator[Metric]:
    read = counters.counters_read()
    known = sorted({*types, *read.labels(counters.ENQUEUED, *counters.FINISHES, counters.RETRIED)})
    enqueued = CounterMetricFamily("jobadmin_jobs_enqueued", "Jobs enqueued, by type.", labels=["type"])
    finished = CounterMetricFamily(
        "jobadmin_jobs_finished",
        "Jobs that finished (completed, failed, cancelled), by type.",
        labels=["type", "status"],
    )
    retries = CounterMetricFamily(
        "jobadmin_job_retries",
        "Attempts queued again after a failure, a stall or a retry by hand, by type.",
        labels=["type"],
    )
    stalled = CounterMetricFamily(
        "jobadmin_jobs_stalled", "Jobs settled because their worker stopped (stall sweep, abandon).", labels=["type"]
    )
    for job_type in known:
        enqueued.add_metric([job_type], read.count(counters.ENQUEUED, job_type))
        for status in FINISHED_STATUSES:
            finished.add_metric([job_type, status], read.count(status, job_type))
        retries.add_metric([job_type], read.count(counters.RETRIED, job_type))
        stalled.add_metric([job_type], read.count(counters.STALLED, job_type))
    yield from (enqueued, finished, retries, stalled)
    histogram = HistogramMetricFamily(
        "jobadmin_job_duration_seconds",
        "Run time of the jobs that finished, counted as they finish (never lowered by a purge).",
        labels=["type"],
    )
    for job_type in known:
        per_bucket = read.buckets.get(job_type, [0] * (len(DURATION_BUCKETS) + 1))
        cumulative, buckets = 0, []
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), per_bucket, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), float(cumulative)))
        histogram.add_metric([job_type], buckets, sum_value=read.duration_sum.get(job_type, 0.0))
    yield histogram
    rules = sorted({*AlertRule.objects.values_list("name", flat=True), *read.labels(counters.ALERT_FIRED)})
    fired = CounterMetricFamily("jobadmin_alerts_fired", "Alerts opened, by rule.", labels=["rule"])
    for rule in rules:
        fired.add_metric([rule], read.count(counters.ALERT_FIRED, rule))
    yield fired


def _jobs_retained(types: list[str]) -> Metric:
    """Jobs by type and status in the retained history, from the statistics buckets (exact as of
    now, see ``monitoring.rollup``): a gauge, it falls when old rows are purged."""
    rows = rollup.cohort(
        start=None, end=timezone.now() + timedelta(microseconds=1), dims=("type", "status"), figures=("jobs",)
    )
    counts = {(row["type"], row["status"]): row["jobs"] for row in rows}
    family = GaugeMetricFamily(
        "jobadmin_jobs",
        "Jobs in the retained history by type and status (falls after a purge).",
        labels=["type", "status"],
    )
    for job_type in sorted({*types, *(t for t, _ in counts)}):
        for status in JobStatus.values:
            family.add_metric([job_type, status], counts.get((job_type, status), 0))
    return family


def _queues() -> Iterator[Metric]:
    limits = dict(Queue.objects.values_list("name", "concurrency"))
    paused = dict(Queue.objects.values_list("name", "paused"))
    depth = metrics.queue_depth()
    running = job_counts_per_queue(statuses=ACTIVE_STATUSES)
    names = sorted({*limits, *depth, *running})
    for name, help_text, values in (
        ("jobadmin_queue_depth", "Queued jobs per queue.", depth),
        ("jobadmin_running_jobs", "Jobs running or paused, per queue.", running),
        ("jobadmin_queue_concurrency", "The queue's concurrency limit (its slots).", limits),
        ("jobadmin_queue_paused", "1 while the queue is paused.", {k: int(v) for k, v in paused.items()}),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["queue"])
        for queue in names:
            family.add_metric([queue], values.get(queue, 0))
        yield family


def _alerts_open() -> Metric:
    counts = {
        (row["severity"], row["status"]): row["n"]
        for row in Alert.objects.filter(status__in=OPEN_STATUSES)
        .order_by()
        .values("severity", "status")
        .annotate(n=Count("pk"))
    }
    family = GaugeMetricFamily(
        "jobadmin_alerts_open",
        "Open (incl. acknowledged) alerts by severity and status.",
        labels=["severity", "status"],
    )
    for severity in Severity.values:
        for status in OPEN_STATUSES:
            family.add_metric([severity, status], counts.get((severity, status), 0))
    return family


def _live() -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "jobadmin_live_workers", "Worker processes of the live django-q2 clusters.", value=metrics.live_workers()
    )
    yield GaugeMetricFamily(
        "jobadmin_websocket_connections",
        "Open websocket connections (all web processes).",
        value=websocket_connections(),
    )
    lag_ms = metrics.event_lag_ms()
    yield GaugeMetricFamily(
        "jobadmin_event_lag_seconds",
        "How long after it was committed the relay published its latest event; 0 while no relay reports.",
        value=max(lag_ms, 0.0) / 1000 if lag_ms is not None else 0.0,
    )
    yield GaugeMetricFamily(
        "jobadmin_relay_reporting",
        "1 while a relay reports its lag (within the last minute).",
        value=int(lag_ms is not None),
    )
    beat = cache.get(metrics.MONITOR_HEARTBEAT_CACHE_KEY)
    yield GaugeMetricFamily(
        "jobadmin_monitor_heartbeat_timestamp_seconds",
        "Unix time of the monitor's last heartbeat (0: never); alert on time() minus it.",
        value=float(beat) if beat is not None else 0.0,
    )


def _system() -> Iterator[Metric]:
    sample = metrics.latest_sample()
    if sample is None:  # no monitor has sampled yet: nothing known, nothing claimed
        return
    for field, name, help_text in (
        ("cpu_percent", "cpu", "CPU use of the monitor's host, 0 to 1."),
        ("memory_percent", "memory", "Memory use of the monitor's host, 0 to 1."),
        ("disk_percent", "disk", "Disk use of the data folder's file system, 0 to 1."),
    ):
        yield GaugeMetricFamily(f"jobadmin_system_{name}_ratio", help_text, value=getattr(sample, field) / 100)
    yield GaugeMetricFamily(
        "jobadmin_system_load1", "1-minute load average of the monitor's host.", value=sample.load_1
    )
    yield GaugeMetricFamily(
        "jobadmin_system_sample_timestamp_seconds",
        "Unix time of the latest system sample.",
        value=sample.sampled_at.timestamp(),
    )


class JobAdminCollector:
    """Everything ``/metrics`` shows, read afresh at each ``collect()``."""

    def collect(self) -> Iterable[Metric]:
        types = [job_type.name for job_type in all_job_types()]
        yield from _counters(types)
        yield _jobs_retained(types)
        yield from _queues()
        yield _alerts_open()
        yield from _live()
        yield from _system()


_registry = CollectorRegistry(auto_describe=False)
_registry.register(JobAdminCollector())  # type: ignore[arg-type]  # a Collector by shape


def render() -> str:
    return generate_latest(_registry).decode()
