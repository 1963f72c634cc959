"""Helpers for monitoring tests: jobs with an explicit history (a controllable clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.models import Job
from tests.factories import JobFactory

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def make_job(
    *,
    status: str,
    created: datetime,
    started: datetime | None = None,
    finished: datetime | None = None,
    type: str = "demo",
    queue: str = "default",
    user: Any = None,
    error: str = "",
) -> Job:
    return JobFactory.create(
        type=type,
        status=status,
        queue=queue,
        user=user,
        created_at=created,
        updated_at=finished or started or created,
        started_at=started,
        finished_at=finished,
        duration=(finished - started).total_seconds() if finished and started else None,
        queue_wait=(started - created).total_seconds() if started else None,
        error=error,
    )


@pytest.fixture(params=["raw", "buckets"])
def fold(request: pytest.FixtureRequest) -> Any:
    """Run a test twice: figures straight from the raw rows, and from the statistics buckets
    (``fold()`` folds them as of ``NOW``; without it nothing is folded and every read is raw)."""

    def run() -> None:
        if request.param == "buckets":
            from monitoring.rollup import rollup_fold

            rollup_fold(now=NOW)

    return run


@pytest.fixture
def job_at() -> Any:
    return make_job


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)
