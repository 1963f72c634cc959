"""What the benchmarks run: a JobAdmin job type and a bare django-q2 task that do nothing."""

from __future__ import annotations

from typing import Any

from jobs.context import JobContext
from jobs.django_tasks import Task, task_backends
from jobs.registry import job


@job("bench-noop", queue="default", timeout=60, description="Does nothing (benchmarks).")
def noop_job(ctx: JobContext, params: dict[str, Any]) -> None:
    return None


def noop_task() -> None:
    """Target of the bare ``async_task`` calls."""
    return None


def _django_task(func: Any) -> Task:
    """``@task`` of this Django line's task framework (jobs.django_tasks picks it)."""
    return task_backends["default"].task_class(func=func, timeout=60)


def noop_django_task() -> None:
    """Enqueued through Django's task API (``--mode django.tasks``)."""
    return None


noop_django_task = _django_task(noop_django_task)  # type: ignore[assignment]
