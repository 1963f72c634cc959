"""The long-poll's answer never jumps over an event id that commits late (PostgreSQL hands out
ids at INSERT, makes them visible at COMMIT): the client's next ``after`` would skip it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from jobs import services
from live.streams import events_of_groups, settled
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
