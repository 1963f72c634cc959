"""What the benchmarks run: a JobAdmin job type and a bare django-q2 task that do nothing."""

from __future__ import annotations

from typing import Any

from jobs.context import JobContext
from jobs.registry import job


@job("bench-noop", queue="default", timeout=60, description="Does nothing (benchmarks).")
def noop_job(ctx: JobContext, params: dict[str, Any]) -> None:
    return None


def noop_task() -> None:
    """Target of the bare ``async_task`` calls."""
    return None
