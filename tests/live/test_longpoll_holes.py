"""The long-poll's answer never jumps over an event id that commits late (PostgreSQL hands out
ids at INSERT, makes them visible at COMMIT): the client's next ``after`` would skip it."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction

from jobs import services
from jobs.events import record_job_event
from jobs.models import EventKind
from jobs.policy import Channel
from live.longpoll import poll
from live.streams import HOLE_GRACE, events_of_groups, settle, settled
from tests.live.test_relay import LateCommit, progress

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_answer_stops_below_an_id_still_uncommitted_and_carries_it_once_committed(user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("out-of-order commits need PostgreSQL's concurrent writers (CI runs this)")
    first = services.job_enqueue(job_type="demo", params={}, user=user)
    second = services.job_enqueue(job_type="demo", params={}, user=user)
    groups = [f"user.{user.pk}"]
    after = max(row["id"] for row in events_of_groups(groups=groups, after=0, limit=500))
    late = LateCommit(first)  # its id is taken, not visible yet
    fast = progress(second, 1)  # a higher id, committed
    assert fast > late.event_id
    rows = events_of_groups(groups=groups, after=after, limit=500)
    assert [row["id"] for row in rows] == [fast]  # what a plain read sees: the late one is missing
    assert settled(rows, after=after) == []  # so the answer waits: its last_event_id would skip it
    late.commit()
    rows = settled(events_of_groups(groups=groups, after=after, limit=500), after=after)
    assert [row["id"] for row in rows] == [late.event_id, fast]


class _RolledBack(Exception):
    pass


def test_a_waiting_poll_answers_when_a_rolled_back_ids_grace_ends_not_at_the_next_recheck(user: Any) -> None:
    """An id rolled back below the only new event holds the answer for ``HOLE_GRACE`` after that
    event; the poll reads again as that grace ends (``settle``'s second value), not at its next
    ``RECHECK`` — that was up to ``RECHECK`` more, ``HOLE_GRACE + RECHECK`` (7 s) in all."""
    if connection.vendor != "postgresql":
        pytest.skip("out-of-order commits need PostgreSQL's concurrent writers (CI runs this)")
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    groups = [f"user.{user.pk}"]
    after = max(row["id"] for row in events_of_groups(groups=groups, after=0, limit=500))
    with contextlib.suppress(_RolledBack), transaction.atomic():
        hole = record_job_event(job=job, kind=EventKind.PROGRESS).id
        raise _RolledBack
    above = progress(job, 1)
    assert above > hole
    rows, held = settle(events_of_groups(groups=groups, after=after, limit=500), after=after)
    assert rows == []
    assert held is not None
    assert 0 < held <= HOLE_GRACE

    async def answer() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        chunks = [chunk async for chunk in poll(channels=[Channel("user", str(user.pk))], after=after, wait=20)]
        return json.loads(b"".join(chunks)), time.monotonic() - started

    body, took = async_to_sync(answer)()
    assert [event["event_id"] for event in body["events"]] == [above], body
    assert body["last_event_id"] == above
    # The grace runs from the event above's commit, which came just before the poll began.
    assert took <= HOLE_GRACE + 0.6, took
