"""The built-in job types: ``demo``, ``export-jobs`` and ``purge-history``."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from django.conf import settings
from rest_framework import serializers

from jobs.context import JobContext
from jobs.filters import filter_jobs
from jobs.models import Job, JobStatus
from jobs.registry import job
from jobs.retention import purgers


class DemoParams(serializers.Serializer):
    items = serializers.IntegerField(
        min_value=1, max_value=1_000_000, default=100, help_text="How many items to process."
    )
    delay_ms = serializers.IntegerField(
        min_value=0, max_value=60_000, default=100, help_text="Milliseconds spent on each item."
    )
    fail_at = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Fail when this item is reached (1-based); leave empty to succeed.",
    )


@job(
    "demo", queue="default", steps=["Prepare", "Process", "Summarise"], params=DemoParams, timeout=3600, max_attempts=1
)
def demo(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Walks its steps with real progress; fails at item ``fail_at`` if given.

    Resumable: paused or stopped, it continues at the first item it had not finished.
    Each run logs the items it processed ("Processed items 4-9."), so the timeline shows
    that no item was processed twice.
    """
    items, delay = params["items"], params["delay_ms"] / 1000
    fail_at = params.get("fail_at")
    if ctx.step("Prepare"):
        ctx.log(f"Processing {items} items, {params['delay_ms']} ms each.")
    if ctx.step("Process"):
        first = last = None
        try:
            for i in ctx.iterate(range(1, items + 1)):
                if fail_at is not None and i == fail_at:
                    raise RuntimeError(f"Demo failure at item {i} of {items}.")
                if delay:
                    time.sleep(delay)
                first, last = first or i, i
        finally:
            if last is not None:
                ctx.log(f"Processed items {first}-{last}.")
    ctx.step("Summarise")
    return {"items": items}


class ExportParams(serializers.Serializer):
    status = serializers.ListField(child=serializers.ChoiceField(choices=JobStatus.choices), required=False)
    type = serializers.CharField(required=False, allow_blank=True)
    queue = serializers.CharField(required=False, allow_blank=True)
    user = serializers.IntegerField(required=False, allow_null=True)
    created_after = serializers.DateTimeField(required=False, allow_null=True)
    created_before = serializers.DateTimeField(required=False, allow_null=True)
    search = serializers.CharField(required=False, allow_blank=True)


EXPORT_COLUMNS = [
    "id",
    "type",
    "status",
    "queue",
    "priority",
    "user",
    "created_at",
    "started_at",
    "finished_at",
    "duration",
    "attempts",
    "processed_items",
    "total_items",
    "error_count",
    "error",
]


@job("export-jobs", queue="batch", steps=["Export"], params=ExportParams, timeout=1800)
def export_jobs(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """A CSV of the job history matching the list filters, kept as the job's result file."""
    ctx.step("Export")
    queryset = filter_jobs(Job.objects.all(), params).select_related("user").order_by("-created_at")
    total = queryset.count()
    ctx.progress(processed=0, total=total)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for n, row in enumerate(queryset.iterator(chunk_size=2000), start=1):
        writer.writerow(
            [
                row.pk,
                row.type,
                row.status,
                row.queue,
                row.priority,
                row.user.get_username() if row.user else "",
                _iso(row.created_at),
                _iso(row.started_at),
                _iso(row.finished_at),
                "" if row.duration is None else f"{row.duration:.3f}",
                row.attempts,
                row.processed_items,
                "" if row.total_items is None else row.total_items,
                row.error_count,
                row.error,
            ]
        )
        ctx.progress(processed=n)
    ctx.save_file(f"jobs-export-{ctx.job_id}.csv", buffer.getvalue().encode())
    return {"rows": total}


def _iso(value: Any) -> str:
    return value.isoformat() if value else ""


class PurgeParams(serializers.Serializer):
    days = serializers.IntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        default=None,
        help_text="Keep this many days of history (default: JOBADMIN_HISTORY_DAYS).",
    )


@job("purge-history", queue="batch", steps=["Purge"], params=PurgeParams, timeout=3600)
def purge_history(ctx: JobContext, params: dict[str, Any]) -> dict[str, int]:
    """Retention: deletes finished jobs, events and samples past their age, in batches."""
    ctx.step("Purge")
    batch = settings.JOBADMIN_PURGE_BATCH
    deleted: dict[str, int] = {}
    for name, purge in purgers(params.get("days")).items():
        deleted[name] = 0
        while True:
            n = purge(batch)
            deleted[name] += n
            ctx.progress(processed=sum(deleted.values()))
            if n < batch:
                break
    for name, n in deleted.items():
        ctx.log(f"Purged {n} {name}.")
    return deleted
