"""The ``batch:<id>`` channel: its members' updates for its owner (and those who see every
batch); refused to others with the same wording whether or not the batch exists."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from jobs import services
from jobs.models import Batch, Job, JobStatus
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


def test_a_members_change_reaches_the_batch_channel_with_the_batchs_aggregate(user: Any) -> None:
    async def scenario() -> None:
        batch, members = await make_batch(user)
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"batch:{batch.pk}")
        assert (await receive(communicator))["type"] == "subscribed"
        await cancel(members[0])
        first = await receive(communicator)
        assert first["job"]["id"] == str(members[0].pk)
        assert first["batch"]["id"] == batch.pk
        assert first["batch"]["status"] == "running"
        assert first["batch"]["counts"] == {**dict.fromkeys(JobStatus.values, 0), "queued": 1, "cancelled": 1}
        assert (first["batch"]["total"], first["batch"]["progress"]) == (2, 50)
        assert first["batch"]["finished_at"] is None
        await cancel(members[1])
        last = await receive(communicator)
        assert last["job"]["id"] == str(members[1].pk)
        assert last["batch"]["status"] == "cancelled"
        assert last["batch"]["counts"]["cancelled"] == 2
        assert (last["batch"]["progress"], last["batch"]["eta"]) == (100, None)
        assert last["batch"]["finished_at"] is not None
        await communicator.disconnect()

    run(scenario)


def test_a_replay_of_the_batch_channel_carries_the_batch_as_it_stands_now(user: Any) -> None:
    async def scenario() -> None:
        batch, members = await make_batch(user)
        await cancel(members[0])
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"batch:{batch.pk}", since=0)
        replayed = [await receive(communicator) for _ in range(4)]
        updates = [m for m in replayed if m["type"] == "job-update"]
        assert len(updates) == 3  # two created, one cancelled
        assert {m["batch"]["counts"]["cancelled"] for m in updates} == {1}
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
