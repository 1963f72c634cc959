"""Job types that fail, sleep past their time-out or spin on progress, for engine tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobs.context import JobContext
from jobs.registry import job, unregister


def flaky(ctx: JobContext, params: dict[str, Any]) -> None:
    """Fails every attempt; retried with a short back-off."""
    raise RuntimeError(f"attempt {ctx.attempt} failed")


def sleeper(ctx: JobContext, params: dict[str, Any]) -> None:
    """Sleeps past its 1 s time-out without ever reaching a checkpoint: only the alarm can stop it."""
    time.sleep(10)


def spinner(ctx: JobContext, params: dict[str, Any]) -> None:
    """Reports progress in a tight loop past its 1 s time-out (bounded, in case nothing stops it)."""
    deadline = time.monotonic() + 10
    i = 0
    while time.monotonic() < deadline:
        i += 1
        ctx.progress(processed=i)


def stepper(ctx: JobContext, params: dict[str, Any]) -> None:
    """Three steps; the second walks 40 items. Each step's body logs that it ran."""
    if ctx.step("First"):
        ctx.log("ran First")
    if ctx.step("Second"):
        for _ in ctx.iterate(range(40)):
            time.sleep(0.01)
        ctx.log("ran Second")
    if ctx.step("Third"):
        ctx.log("ran Third")


def one_shot(ctx: JobContext, params: dict[str, Any]) -> None:
    """Cannot continue from a checkpoint."""
    for i in range(50):
        ctx.progress(processed=i)
        time.sleep(0.01)


def stubborn(ctx: JobContext, params: dict[str, Any]) -> None:
    """Works for 20 s without reaching a checkpoint."""
    ctx.step("Work")
    time.sleep(20)


def slow(ctx: JobContext, params: dict[str, Any]) -> None:
    """Five seconds of work in 50 checkpointed slices."""
    for _ in ctx.iterate(range(50)):
        time.sleep(0.1)


def reader(ctx: JobContext, params: dict[str, Any]) -> None:
    """Forty checkpointed items, each reading the database itself; logs the items each run did."""
    from jobs.models import Job

    first = done = None
    try:
        for index in ctx.iterate(range(40)):
            first = index if first is None else first
            Job.objects.filter(pk=ctx.job_id).exists()
            time.sleep(0.1)
            done = index + 1
    finally:
        if first is not None and done is not None:
            ctx.log(f"Processed items {first + 1}-{done}.")


def chatty(ctx: JobContext, params: dict[str, Any]) -> None:
    """Sixty items of 0.1 s, five log lines each (its log is written every 100 lines)."""
    for index in ctx.iterate(range(60)):
        for line in range(5):
            ctx.log(f"item {index} line {line}")
        time.sleep(0.1)


def resumable(ctx: JobContext, params: dict[str, Any]) -> None:
    """Eighty checkpointed items of 0.1 s; requeued from its cursor after a stall."""
    for _ in ctx.iterate(range(80)):
        time.sleep(0.1)


TYPES: dict[str, tuple[Any, dict[str, Any]]] = {
    "test-chatty": (chatty, {"timeout": 60}),
    "test-reader": (reader, {"timeout": 60}),
    "test-slow": (slow, {"timeout": 6}),
    "test-stubborn": (stubborn, {"timeout": 60, "stall_policy": "requeue", "max_attempts": 3}),
    "test-stepper": (stepper, {"steps": ["First", "Second", "Third"], "timeout": 60}),
    "test-one-shot": (one_shot, {"resumable": False, "timeout": 60}),
    "test-flaky": (flaky, {"max_attempts": 3, "retry_backoff": 0.3, "timeout": 30}),
    "test-sleeper": (sleeper, {"timeout": 1}),
    "test-spinner": (spinner, {"timeout": 1}),
    "test-resumable": (resumable, {"timeout": 60, "stall_policy": "requeue", "max_attempts": 3}),
}


def register() -> None:
    for name, (func, options) in TYPES.items():
        job(name, **options)(func)


def unregister_all() -> None:
    for name in TYPES:
        unregister(name)


@contextmanager
def registered() -> Iterator[None]:
    """The types registered in this process for the duration of a test."""
    register()
    try:
        yield
    finally:
        unregister_all()


register()
