"""``GET /metrics`` in the Prometheus text exposition format (version 0.0.4), written directly.

Every value is read at scrape time from the database (and the cache for websocket
connections); nothing is kept in process memory, so any web process answers the same.
Who may scrape is ``jobs.policy.may_scrape_metrics``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES
from jobs.selectors import job_counts_per_queue
from monitoring import metrics, rollup
from monitoring.models import DURATION_BUCKETS, OPEN_STATUSES, Alert

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float) and value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float | int | None, **labels: Any) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def websocket_connections() -> int:
    value = cache.get(metrics.WS_CONNECTIONS_CACHE_KEY)
    return max(int(value), 0) if value is not None else 0


def _jobs_and_histograms(w: Writer) -> None:
    """Jobs by type and status, and the run-time histograms of the finished ones, from the statistics
    buckets (exact as of now, see ``monitoring.rollup``) rather than a scan of the table."""
    rows = rollup.cohort(
        start=None,
        end=timezone.now() + timedelta(microseconds=1),
        dims=("type", "status"),
        figures=("jobs", "duration_count", "duration_sum", *rollup.HISTOGRAM),
    )
    w.family("jobadmin_jobs", "gauge", "Jobs in the retained history by type and status.")
    for job_row in sorted(rows, key=lambda r: (r["type"], r["status"])):
        w.sample("jobadmin_jobs", job_row["jobs"], type=job_row["type"], status=job_row["status"])
    per_type: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["status"] in FINISHED_STATUSES and row["duration_count"]:
            into = per_type.setdefault(row["type"], defaultdict(float))
            for name in ("duration_count", "duration_sum", *rollup.HISTOGRAM):
                into[name] += row[name]
    w.family("jobadmin_job_duration_seconds", "histogram", "Run time of finished jobs (retained history).")
    for job_type in sorted(per_type):
        figures = per_type[job_type]
        for bound, column in zip(DURATION_BUCKETS, rollup.HISTOGRAM, strict=True):
            w.sample(
                "jobadmin_job_duration_seconds_bucket", int(figures[column]), type=job_type, le=_number(float(bound))
            )
        n = int(figures["duration_count"])
        w.sample("jobadmin_job_duration_seconds_bucket", n, type=job_type, le="+Inf")
        w.sample("jobadmin_job_duration_seconds_sum", float(figures["duration_sum"]), type=job_type)
        w.sample("jobadmin_job_duration_seconds_count", n, type=job_type)


def render() -> str:
    w = Writer()
    _jobs_and_histograms(w)
    w.family("jobadmin_queue_depth", "gauge", "Queued jobs per queue.")
    for name, depth in sorted(metrics.queue_depth().items()):
        w.sample("jobadmin_queue_depth", depth, queue=name)
    w.family("jobadmin_running_jobs", "gauge", "Jobs running or paused, per queue.")
    running = job_counts_per_queue(statuses=ACTIVE_STATUSES)
    for name in sorted(running):
        w.sample("jobadmin_running_jobs", running[name], queue=name)
    w.family("jobadmin_live_workers", "gauge", "Worker processes of the live django-q2 clusters.")
    w.sample("jobadmin_live_workers", metrics.live_workers())
    w.family("jobadmin_websocket_connections", "gauge", "Open websocket connections (all web processes).")
    w.sample("jobadmin_websocket_connections", websocket_connections())
    w.family("jobadmin_alerts_open", "gauge", "Open (incl. acknowledged) alerts by severity and status.")
    for open_row in (
        Alert.objects.filter(status__in=OPEN_STATUSES)
        .order_by()
        .values("severity", "status")
        .annotate(n=Count("pk"))
        .order_by("severity", "status")
    ):
        w.sample("jobadmin_alerts_open", open_row["n"], severity=open_row["severity"], status=open_row["status"])
    w.family("jobadmin_alerts_total", "gauge", "Alerts in the retained history by rule.")
    for rule_row in Alert.objects.order_by().values("rule__name").annotate(n=Count("pk")).order_by("rule__name"):
        w.sample("jobadmin_alerts_total", rule_row["n"], rule=rule_row["rule__name"])
    sample = metrics.latest_sample()
    if sample is not None:
        for field, help_text in (
            ("cpu_percent", "CPU use of the monitor's host, percent."),
            ("memory_percent", "Memory use of the monitor's host, percent."),
            ("disk_percent", "Disk use of the data folder, percent."),
            ("load_1", "1-minute load average."),
        ):
            w.family(f"jobadmin_system_{field}", "gauge", help_text)
            w.sample(f"jobadmin_system_{field}", getattr(sample, field))
        w.family("jobadmin_event_lag_ms", "gauge", "Event lag reported by the relay, ms.")
        w.sample("jobadmin_event_lag_ms", sample.event_lag_ms)
    return w.text()
