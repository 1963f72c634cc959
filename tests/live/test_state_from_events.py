"""A client that folds the ``job-update`` events into its first read ends where a fresh read is.

zulip's ``verify_action``: state + events == a fresh read. A websocket client (the monitor
page) reads the jobs once, notes the ``latest_event_id`` it was welcomed with, and then
replaces each job by the snapshot of every ``job-update`` after it. If any change of a job
were written without its event (or with a stale snapshot), the folded state would differ
from what the API answers afterwards. The jobs here go through every transition, in
process, through the same services the workers and the API call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from jobs import services
from jobs.events import job_snapshot
from jobs.models import Job
from live.messages import JOB_UPDATE_WITHHELD
from live.relay import ALL_GROUP, latest_event_id, message_for, replay_events
from tests.factories import UserFactory

WORKER = "fold-test:1"
# What a job-update carries: the snapshot less what is not sent live (the worker's name).
SNAPSHOT_FIELDS = [f for f in job_snapshot(Job(type="demo", steps=[])) if f not in JOB_UPDATE_WITHHELD]


def _api_jobs(client: APIClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/jobs/", {"page_size": 500})
    assert response.status_code == 200
    return {row["id"]: row for row in response.json()["results"]}


def _events_after(after: int) -> list[dict[str, Any]]:
    """The ``all`` channel's messages after ``after``, as replay delivers them to a subscriber."""
    out = []
    for row in replay_events(group=ALL_GROUP, after=after, limit=10_000):
        message = message_for(row)
        if message is not None:
            out.append(message)
    return out


def _comparable(job: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's fields of a job, datetimes as instants and progress to its 2 decimals.

    The API writes ``...Z`` where the snapshot writes ``+00:00``: the same instant.
    """
    out: dict[str, Any] = {}
    for name in SNAPSHOT_FIELDS:
        value = job[name]
        if isinstance(value, str) and name.endswith(("_at", "eta")) and value:
            parsed: datetime | None = parse_datetime(value)
            value = parsed
        elif name == "progress":
            value = round(float(value), 2)
        out[name] = value
    return out


def _claim(expected: Job) -> Job:
    claimed = services.job_claim(queue=expected.queue, worker=WORKER)
    assert claimed is not None
    assert claimed.pk == expected.pk
    return claimed


@pytest.mark.django_db
def test_first_read_plus_job_updates_equals_a_fresh_read() -> None:
    staff = UserFactory.create(is_staff=True, is_superuser=True)
    owner = UserFactory.create()
    api = APIClient()
    api.force_authenticate(staff)

    def enqueue(queue: str | None = None) -> Job:
        return services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 0}, queue=queue, user=owner)

    # Before the client connects: one job already running with progress, one queued.
    started = enqueue()
    started = _claim(started)
    services.job_report(
        job_id=started.pk, worker=WORKER, attempt=started.attempts, values={"processed_items": 1, "progress": 10.0}
    )
    waiting = enqueue()

    # The client's first read, and the watermark it was welcomed with.
    watermark = latest_event_id()
    state = {job_id: _comparable(job) for job_id, job in _api_jobs(api).items()}
    assert set(state) == {str(started.pk), str(waiting.pk)}

    # Then everything happens: reports, a step, pause and resume, completion ...
    for done in (2, 3):
        services.job_report(
            job_id=started.pk,
            worker=WORKER,
            attempt=started.attempts,
            values={"processed_items": done, "total_items": 3, "progress": 33.3333 * done},
        )
    services.job_report(
        job_id=started.pk, worker=WORKER, attempt=started.attempts, values={"current_step": 1}, kind="step"
    )
    # ... the waiting job fails (no retry left) ...
    waiting = _claim(waiting)
    services.job_fail(job_id=waiting.pk, worker=WORKER, attempt=waiting.attempts, error="boom", retry=False)
    # ... the first is suspended at a checkpoint, resumed (queued again), continued by a
    # worker and completes ...
    services.job_pause(job=Job.objects.get(pk=started.pk), actor=owner)
    assert services.job_suspend(
        job_id=started.pk, worker=WORKER, attempt=started.attempts, values={"checkpoint": {"step": 1, "cursor": 3}}
    )
    services.job_resume(job=Job.objects.get(pk=started.pk), actor=owner)
    started = _claim(started)
    assert services.job_complete(
        job_id=started.pk, worker=WORKER, attempt=started.attempts, values={"progress": 100.0}, result={"ok": 1}
    )
    # ... the failed one is retried by hand and waits ...
    services.job_retry(job=Job.objects.get(pk=waiting.pk), actor=staff)
    # ... a job created after the first read is cancelled while running, another while queued.
    late = _claim(enqueue(queue="high"))
    services.job_cancel(job=Job.objects.get(pk=late.pk), actor=owner)
    assert services.job_mark_cancelled(job_id=late.pk, worker=WORKER, attempt=late.attempts, values={})
    never = enqueue()
    services.job_cancel(job=never, actor=owner)

    events = _events_after(watermark)
    assert [m["event_id"] for m in events] == sorted(m["event_id"] for m in events)
    assert {m["kind"] for m in events} >= {
        "progress",
        "step",
        "pause-requested",
        "paused",
        "resumed",
        "started",
        "failed",
        "retried",
        "completed",
        "cancel-requested",
        "cancelled",
        "created",
    }
    for message in events:
        assert message["type"] == "job-update"
        state[message["job"]["id"]] = _comparable(message["job"])

    fresh = {job_id: _comparable(job) for job_id, job in _api_jobs(api).items()}
    assert set(state) == set(fresh)
    for job_id, job in fresh.items():
        assert state[job_id] == job, job_id
