"""The ``batch:<id>`` channel: its members' updates for its owner (and those who see every
batch); refused to others with the same wording whether or not the batch exists."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from jobs import services
from jobs.models import Batch, Job
from live import messages
from tests.live.test_consumers import (  # the consumer tests' own helpers: one way to drive a socket
    _relay_in_test_loop,  # noqa: F401 - an autouse fixture
    assert_silent,
    connect,
    receive,
    run,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

MEMBER = {"type": "demo", "params": {"items": 2, "delay_ms": 0}}


@database_sync_to_async
def make_batch(user: Any) -> tuple[Batch, list[Job]]:
    batch = services.batch_create(name="live", members=[MEMBER, MEMBER], user=user)
    return batch, list(Job.objects.filter(batch=batch).order_by("created_at", "id"))


@database_sync_to_async
def cancel(job: Job) -> None:
    services.job_cancel(job=job)


def test_the_owner_follows_a_batchs_members_and_replay_gives_what_was_missed(user: Any) -> None:
    async def scenario() -> None:
        batch, members = await make_batch(user)
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"batch:{batch.pk}", since=0)
        replayed = [await receive(communicator) for _ in range(3)]
        kinds = [m["type"] for m in replayed]
        assert "subscribed" in kinds
        created = [m for m in replayed if m["type"] == "job-update"]
        assert {m["job"]["id"] for m in created} == {str(job.pk) for job in members}
        await cancel(members[0])
        update = await receive(communicator)
        assert update["type"] == "job-update"
        assert update["job"]["id"] == str(members[0].pk)
        assert update["job"]["status"] == "cancelled"
        assert update["job"]["batch"] == batch.pk
        await communicator.disconnect()

    run(scenario)


def test_anothers_batch_and_a_missing_one_are_refused_alike_and_leak_nothing(user: Any, other_user: Any) -> None:
    async def scenario() -> None:
        batch, members = await make_batch(other_user)
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"batch:{batch.pk}")
        theirs = await receive(communicator)
        await send(communicator, type="subscribe", channel="batch:987654")
        missing = await receive(communicator)
        assert theirs["code"] == missing["code"] == messages.FORBIDDEN
        assert theirs["message"] == missing["message"]
        await cancel(members[0])
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)
