"""``@task`` functions for the backend's tests; a worker imports this module by the job's type."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.dtasks.compat import task


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=10, queue_name="high")
def noop() -> None:
    return None


class Refused(Exception):
    pass


@task()
def fails(message: str) -> None:
    raise Refused(message)


@task(max_attempts=2, retry_backoff=0.1)  # type: ignore[call-overload,unused-ignore]  # JobAdmin's options
def fails_once_then_counts(marker: str) -> str:
    # The first attempt fails, the retry succeeds: the attempt is the marker's line count.
    from pathlib import Path

    path = Path(marker)
    path.write_text(path.read_text() + "x" if path.exists() else "x")
    if path.read_text() == "x":
        raise Refused("first attempt")
    return "second"


@task()
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True, steps=("count",))  # type: ignore[call-overload,unused-ignore]  # JobAdmin's options
def counts(context: Any, n: int) -> dict[str, Any]:
    """Reports its progress through ``context.job``."""
    job = context.job
    job.step("count")
    for i in range(n):
        job.progress(processed=i + 1, total=n)
    job.log(f"counted {n}")
    return {"attempt": context.attempt, "id": context.task_result.id, "n": n}


@task(takes_context=True, max_attempts=1, steps=("walk",))  # type: ignore[call-overload,unused-ignore]  # JobAdmin's options
def slow_walk(context: Any, items: int, delay: float) -> int:
    """Walks ``items`` items, ``delay`` s each, reporting each one (so a cancel lands between them)."""
    job = context.job
    job.step("walk")
    for i in range(items):
        time.sleep(delay)
        job.progress(processed=i + 1, total=items)
    return items
