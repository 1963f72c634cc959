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


def dispatch_live(event_id: int, *, job: str | None, groups: list[str]) -> None:
    """An event the process's hub hands to its sockets, as if the relay had published it."""
    text = json.dumps({"type": "job-update", "event_id": event_id})
    event = {"id": event_id, "at": None, "kind": "progress", "job": job, "groups": groups, "text": text}
    get_hub().dispatch({"type": EVENTS_TYPE, "events": [event]})


async def job_update_ids(communicator: WebsocketCommunicator, count: int) -> list[int]:
    """The ``event_id`` of the next ``count`` job-updates, in arrival order."""
    order: list[int] = []
    while len(order) < count:
        message = json.loads(await communicator.receive_from(timeout=TIMEOUT))
        if message["type"] == "job-update":
            order.append(message["event_id"])
    return order


def test_welcome_is_the_first_frame_even_when_an_event_arrives_while_the_socket_connects(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket joins its user's group before it reads the latest event id for ``welcome``:
    an event the hub hands over in between must wait for the welcome."""
    real_latest = consumers._latest_event_id

    async def latest_while_an_event_arrives() -> int:
        dispatch_live(10**9, job=None, groups=[f"user.{user.pk}"])
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
        communicator = await connect(user, relay=False)  # the welcome is out; the test dispatches
        live = missed + 10**6
        dispatch_live(live, job=str(job.pk), groups=[f"user.{user.pk}", f"job.{job.pk}"])
        await send(communicator, type="subscribe", channel=f"job:{job.pk}", since=since)
        assert await job_update_ids(communicator, 2) == [missed, live]
        await communicator.disconnect()

    run(scenario)


def test_a_later_subscribes_replay_is_not_overtaken_by_another_channels_catch_up(
    user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an open socket, a second subscription replays with ``since`` while the catch-up of
    the first one finds events the live path missed: the replay still comes in ``event_id``
    order, with nothing newer before it, so a client that applies only newer ids drops none."""
    from tests.live.test_consumers import connect, event_ids, make_job, progress, receive, send

    settings.JOBADMIN_RELAY_IN_WEB = False  # no live path: as if the layer dropped every event
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 2)  # the replay takes several reads
    monkeypatch.setattr(consumers, "CATCH_UP_AFTER", (0.3, 0.35))
    monkeypatch.setattr(consumers._SharedIdReads, "SLOT", 0.05)
    caught_up = asyncio.Event()
    real_events, real_replay = consumers._events, consumers._replay

    async def catch_up_rows(ids: list[int]) -> list[dict[str, Any]]:
        rows = await real_events(ids)
        caught_up.set()
        return rows

    async def slow_replay(group: str, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await real_replay(group, after, limit)
        if len(rows) == limit:  # a page with more to come: the catch-up reads meanwhile
            await asyncio.wait_for(caught_up.wait(), TIMEOUT)
            await asyncio.sleep(0.1)
        return rows

    monkeypatch.setattr(consumers, "_events", catch_up_rows)
    monkeypatch.setattr(consumers, "_replay", slow_replay)

    async def scenario() -> None:
        job = await make_job(user)
        since = (await event_ids(job))[-1]
        older = [await progress(job, n) for n in (1, 2, 3)]
        communicator = await connect(user, relay=False)
        await send(communicator, type="subscribe", channel=f"job:{job.pk}")  # its catch-up: after `older`
        assert (await receive(communicator))["type"] == "subscribed"
        newer = [await progress(job, n) for n in (4, 5)]
        await send(communicator, type="subscribe", channel=f"user:{user.pk}", since=since)
        assert await job_update_ids(communicator, 5) == older + newer
        await communicator.disconnect()

    run(scenario)


def test_a_later_subscribe_with_since_holds_live_events_while_its_permission_is_checked(
    user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an open socket a subscription with ``since`` is asked of the policy (a database
    hop) before it joins: an event of that job arriving live on the user's channel meanwhile
    still comes after the replay of the older ones."""
    from tests.live.test_consumers import connect, event_ids, make_job, progress, receive, send

    settings.JOBADMIN_RELAY_IN_WEB = False  # only the event dispatched below is live
    real_may_subscribe = consumers._may_subscribe
    arrived: list[int] = []

    async def may_subscribe_while_an_event_arrives(who: Any, channel: Any) -> bool:
        if arrived:
            dispatch_live(arrived[0], job=channel.key, groups=[f"user.{who.pk}", f"job.{channel.key}"])
            await asyncio.sleep(0.05)  # the process's flusher gets its turn
        return bool(await real_may_subscribe(who, channel))

    monkeypatch.setattr(consumers, "_may_subscribe", may_subscribe_while_an_event_arrives)

    async def scenario() -> None:
        job = await make_job(user)
        since = (await event_ids(job))[-1]
        communicator = await connect(user, relay=False)
        await send(communicator, type="ping")  # the socket is open and live
        assert (await receive(communicator))["type"] == "pong"
        missed = await progress(job, 1)
        arrived.append(missed + 10**6)
        await send(communicator, type="subscribe", channel=f"job:{job.pk}", since=since)
        assert await job_update_ids(communicator, 2) == [missed, arrived[0]]
        await communicator.disconnect()

    run(scenario)
