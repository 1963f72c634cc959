"""The built-in job types: ``demo``, ``export-jobs`` and ``purge-history`` (``management-command``: jobs.bridge)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from rest_framework import serializers

from jobs import policy, selectors
from jobs.context import JobContext
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
    """A CSV of the job history matching the list filters, kept as the job's result file.

    Resumable: rows go to a partial file beside the result files, newest first by
    ``(created_at, id)``; the cursor keeps the last row written and the file's length then,
    so a continued export truncates the file to that length and goes on after that row. The
    history it exports is the one as of the first run (``created_at`` up to its start).

    It runs with the rights of the user who queued it: only the jobs that user may see (a
    job queued by the system itself, with no user, exports every job).
    """
    if not ctx.step("Export"):
        return {"rows": 0}
    state: dict[str, Any] = ctx.cursor or {"until": timezone.now().isoformat(), "after": None, "rows": 0, "bytes": 0}
    queryset = selectors.job_export_queryset(params=params, base=_visible_to_owner(ctx)).filter(
        created_at__lte=state["until"]
    )
    total = queryset.count() if state["after"] is None else ctx.values()["total_items"]
    partial = Path(settings.MEDIA_ROOT) / "partial" / f"export-{ctx.job_id}.csv"
    partial.parent.mkdir(parents=True, exist_ok=True)
    if state["bytes"] and (not partial.exists() or partial.stat().st_size < state["bytes"]):
        # The file lost what the cursor counts (another machine, a crash before a flush):
        # start the export over rather than write a file with rows missing.
        state = {**state, "after": None, "rows": 0, "bytes": 0}
    if state["after"] is not None:
        created, pk = state["after"]
        queryset = queryset.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk))
    line = io.StringIO()
    writer = csv.writer(line)
    with partial.open("r+b" if partial.exists() else "w+b") as out:
        out.truncate(state["bytes"])
        out.seek(state["bytes"])
        if not state["bytes"]:
            writer.writerow(EXPORT_COLUMNS)
        rows = state["rows"]
        ctx.progress(processed=rows, total=total)
        for row in queryset.order_by("-created_at", "-pk").iterator(chunk_size=2000):
            writer.writerow(_export_row(row))
            out.write(line.getvalue().encode())
            line.seek(0)
            line.truncate()
            rows += 1
            after = [row.created_at.isoformat(), str(row.pk)]
            ctx.save_cursor({**state, "after": after, "rows": rows, "bytes": out.tell()}, processed=rows)
        if line.getvalue():  # the header of an empty export
            out.write(line.getvalue().encode())
        out.seek(0)
        ctx.save_file(f"jobs-export-{ctx.job_id}.csv", out.read())
    partial.unlink()
    return {"rows": rows}


def _visible_to_owner(ctx: JobContext) -> Any:
    if ctx.user_id is None:
        return Job.objects.all()
    owner = get_user_model().objects.filter(pk=ctx.user_id).first()
    return policy.visible_jobs(user=owner)  # a deleted owner: none


# A cell a spreadsheet would run as a formula starts with one of these (OWASP "CSV injection"):
# such text cells get a leading apostrophe, which spreadsheets show as text and do not run.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet runs: text starting like a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _export_row(row: Job) -> list[Any]:
    return [neutralise_cell(cell) for cell in _export_cells(row)]


def _export_cells(row: Job) -> list[Any]:
    return [
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


@job(
    "purge-history",
    queue="batch",
    steps=["Purge"],
    params=PurgeParams,
    timeout=3600,
    permission=policy.PURGE_HISTORY,
)
def purge_history(ctx: JobContext, params: dict[str, Any]) -> dict[str, int]:
    """Retention: deletes finished jobs, events and samples past their age, in batches.

    Each batch is a checkpoint; the cursor keeps the purgers that are done and the counts,
    so a suspended purge continues with the purger it was in (deleting is idempotent).
    """
    batch = settings.JOBADMIN_PURGE_BATCH
    state: dict[str, Any] = ctx.cursor or {"done": [], "deleted": {}}
    deleted: dict[str, int] = state["deleted"]
    if ctx.step("Purge"):
        for name, purge in purgers(params.get("days")).items():
            if name in state["done"]:
                continue
            deleted.setdefault(name, 0)
            while True:
                n = purge(batch)
                deleted[name] += n
                if n < batch:
                    state["done"].append(name)
                ctx.save_cursor(state, processed=sum(deleted.values()))
                if n < batch:
                    break
    for name, n in deleted.items():
        ctx.log(f"Purged {n} {name}.")
    return deleted
