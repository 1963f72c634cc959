"""A ``@task`` end to end: real ``qcluster`` and daphne, a real websocket client.

The task is enqueued through Django's API as a user (``acting_as``), watched live over the
websocket as it reports progress through its context, cancelled mid-run through the jobs
API, retried, and its result read back with ``get_result``. With REDIS_URL the relay runs in
``manage.py monitor``; on the embedded default daphne runs it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
from typing import Any

import pytest
from django.conf import settings
from django.db import connection as db_connection
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect

from jobs.django_tasks import acting_as
from tests.conftest import wait_for
from tests.dtasks import tasks
from tests.dtasks.compat import TaskResultStatus
from tests.live.test_live_e2e import http, next_message, start_daphne, until


def post(port: int, path: str, token: str) -> Any:
    try:
        return http(port, path, token, {})
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path}: {exc.code} {exc.read()!r}") from None


async def off_loop(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` in a thread, whose database connection is closed after (no session outlives the test)."""

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            db_connection.close()

    return await asyncio.to_thread(call)


pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_task_watched_live_cancelled_retried_and_read_back(processes: Any, user: Any) -> None:
    token = Token.objects.create(user=user).key
    processes.qcluster()
    if settings.REDIS_URL:
        monitor = processes.start("manage.py", "monitor", name="monitor")
        wait_for(lambda: b"running" in processes.log_of(monitor), timeout=30, message="monitor did not start")
    port = start_daphne(processes)

    async def scenario() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with connect(f"ws://127.0.0.1:{port}/ws/jobs/?token={token}") as ws:
            assert (await next_message(ws))["type"] == "welcome"
            with acting_as(user):
                result = await off_loop(tasks.slow_walk.enqueue, items=40, delay=0.1)
            await ws.send(json.dumps({"type": "subscribe", "channel": f"job:{result.id}", "since": 0}))

            def update(status: str, *, moved: bool = False) -> Any:
                def match(m: dict[str, Any]) -> bool:
                    job = m.get("job") or {}
                    return (
                        m["type"] == "job-update"
                        and job.get("id") == result.id
                        and job.get("status") == status
                        and (not moved or job.get("processed_items", 0) > 0)
                    )

                return match

            await until(ws, update("running", moved=True), seen, timeout=60)  # progress, live
            fetched = await off_loop(tasks.slow_walk.get_result, result.id)
            assert fetched.status == TaskResultStatus.RUNNING
            await off_loop(post, port, f"/api/jobs/{result.id}/cancel/", token)
            await until(ws, update("cancelled"), seen, timeout=30)
            cancelled = await off_loop(tasks.slow_walk.get_result, result.id)
            assert cancelled.status == TaskResultStatus.FAILED
            assert cancelled.errors[-1].exception_class_path == "jobs.exceptions.JobCancelled"

            await off_loop(post, port, f"/api/jobs/{result.id}/retry/", token)
            await until(ws, update("completed"), seen, timeout=60)
            await off_loop(result.refresh)
            assert result.status == TaskResultStatus.SUCCESSFUL
            assert result.return_value == 40
            assert result.attempts == 2
            assert len(result.worker_ids) == 2
        return seen

    seen = asyncio.run(scenario())
    progress = [m["job"]["processed_items"] for m in seen if m["type"] == "job-update"]
    assert len(set(progress)) > 2, progress  # it was watched moving, not just started and ended
