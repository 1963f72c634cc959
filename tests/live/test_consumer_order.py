"""Frame order on a socket (DESIGN.md: ``welcome`` first, before anything else; replay in
``event_id`` order; issue 14, item 7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from live import consumers
from live.consumers import JobsConsumer
from live.relay import EVENTS_TYPE, get_hub
from tests.live.test_consumers import TIMEOUT, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_welcome_is_the_first_frame_even_when_an_event_arrives_while_the_socket_connects(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket joins its user's group before it reads the latest event id for ``welcome``:
    an event the hub hands over in between must wait for the welcome."""
    real_latest = consumers._latest_event_id

    async def latest_while_an_event_arrives() -> int:
        hub = get_hub()
        event = {"id": 10**9, "at": None, "kind": "progress", "job": None, "groups": [f"user.{user.pk}"]}
        event["text"] = json.dumps({"type": "job-update", "event_id": 10**9})
        hub.dispatch({"type": EVENTS_TYPE, "events": [event]})
        await asyncio.sleep(0.05)  # the process's flusher gets its turn
        return int(await real_latest())

    monkeypatch.setattr(consumers, "_latest_event_id", latest_while_an_event_arrives)

    async def scenario() -> None:
        communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        first = json.loads(await communicator.receive_from(timeout=TIMEOUT))
        second = json.loads(await communicator.receive_from(timeout=TIMEOUT))
        assert [first["type"], second["type"]] == ["welcome", "job-update"]
        await communicator.disconnect()

    run(scenario)


def test_a_resuming_client_gets_the_replay_before_live_events_of_its_own_user_channel(
    user: Any,
) -> None:
    """A client reconnects and subscribes with ``since``; an event of its job arrives live on
    its user channel (joined at connect) before the subscription: the replay of what it
    missed still comes first, in ``event_id`` order, then the live event."""
    from tests.live.test_consumers import connect, event_ids, make_job, progress, send

    async def scenario() -> None:
        job = await make_job(user)
        since = (await event_ids(job))[-1]
        missed = await progress(job, 1)  # while the client was away
        communicator = await connect(user)  # the welcome is out
        live = {"id": missed + 10**6, "at": None, "kind": "progress", "job": str(job.pk)}
        live["groups"] = [f"user.{user.pk}", f"job.{job.pk}"]
        live["text"] = json.dumps({"type": "job-update", "event_id": live["id"]})
        get_hub().dispatch({"type": EVENTS_TYPE, "events": [live]})
        await send(communicator, type="subscribe", channel=f"job:{job.pk}", since=since)
        order: list[int] = []
        while len(order) < 2:
            message = json.loads(await communicator.receive_from(timeout=TIMEOUT))
            if message["type"] == "job-update":
                order.append(message["event_id"])
        assert order == [missed, live["id"]]
        await communicator.disconnect()

    run(scenario)
