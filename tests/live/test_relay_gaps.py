"""A web process whose channel layer lost relay batches gets their events anyway (issue 14's
chaos soak: after Redis restarted empty, open sockets never got the events the relay
published before their daphne's pub/sub subscription was back).

Each batch the relay publishes carries its number (``seq``), and an idle relay repeats the
last number every ``TICK_EVERY`` seconds: a hub that sees a number skipped reads the log
again for its sockets' channels.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async

from live import relay
from live.relay import EVENTS_TYPE, EventRelay, events_by_ids, get_hub, layer_event
from tests.live.test_consumers import TIMEOUT, connect, event_ids, make_job, progress, run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_relay_in_the_web_process(settings: Any) -> None:
    settings.JOBADMIN_RELAY_IN_WEB = False  # the test hands the hub its batches itself


@database_sync_to_async
def batch(event_ids: list[int], seq: int, **extra: Any) -> dict[str, Any]:
    events = [layer_event(row) for row in events_by_ids(ids=event_ids)]
    return {"type": EVENTS_TYPE, "events": events, "relay": "r1", "seq": seq, **extra}


async def job_updates(communicator: Any, count: int) -> list[int]:
    got: list[int] = []
    while len(got) < count:
        message = json.loads(await communicator.receive_from(timeout=TIMEOUT))
        if message["type"] == "job-update":
            got.append(message["event_id"])
    return got


@pytest.mark.parametrize("revealed_by", ["the next batch", "an idle tick"])
def test_events_of_a_batch_the_hub_never_received_reach_the_open_sockets(user: Any, revealed_by: str) -> None:
    async def scenario() -> None:
        communicator = await connect(user, relay=False)
        job = await make_job(user)
        first = await progress(job, 1)
        lost = await progress(job, 2)
        hub = get_hub()
        hub.dispatch(await batch([*await event_ids(job)][:2], seq=1))  # "created", then ``first``
        assert (await job_updates(communicator, 2))[-1] == first

        # Batch 2 (the event ``lost``) was published while this process's layer was away.
        if revealed_by == "the next batch":
            third = await progress(job, 3)
            hub.dispatch(await batch([third], seq=3))
            assert sorted(await job_updates(communicator, 2)) == [lost, third]
        else:
            hub.dispatch({"type": EVENTS_TYPE, "events": [], "relay": "r1", "seq": 2, "tick": True})
            assert await job_updates(communicator, 1) == [lost]
        await communicator.disconnect()

    run(scenario)


def test_a_hub_that_missed_nothing_reads_nothing_again(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        communicator = await connect(user, relay=False)
        job = await make_job(user)
        reads: list[int] = []
        monkeypatch.setattr(type(get_hub()), "_missed", lambda self, anchor: reads.append(anchor))
        hub = get_hub()
        for seq in (1, 2):
            hub.dispatch(await batch([await progress(job, seq)], seq=seq))
        hub.dispatch({"type": EVENTS_TYPE, "events": [], "relay": "r1", "seq": 2, "tick": True})
        hub.dispatch(await batch([await progress(job, 3)], seq=1, relay="r2"))  # a new relay (failover)
        await job_updates(communicator, 3)
        assert reads == []
        await communicator.disconnect()

    run(scenario)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_the_relay_numbers_its_batches_and_repeats_the_last_number_while_idle(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "TICK_EVERY", 0.05)

    async def scenario() -> None:
        layer = Recorder()
        publisher = EventRelay(layer=layer, poll=0.005)
        await publisher.step()  # the first read sets the cursor
        job = await make_job(user)
        await progress(job, 1)
        await publisher.step()
        await progress(job, 2)
        await publisher.step()
        await asyncio.sleep(0.06)
        await publisher.step()  # nothing new: a tick
        await publisher.close()
        numbered = [(m["seq"], bool(m.get("tick")), len(m["events"])) for m in layer.sent]
        assert numbered[:2] == [(1, False, 2), (2, False, 1)]  # created + progress, then progress
        assert numbered[2:] == [(2, True, 0)]
        assert len({m["relay"] for m in layer.sent}) == 1

    run(scenario)


def test_missed_batches_longer_than_a_page_reach_the_open_sockets(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The 32-minute soak: at ~200 events/s a Redis restart hid more events than one page of the
    # catch-up read (500), and the ones past the first page never reached any socket.
    from live import consumers

    monkeypatch.setattr(consumers, "REPLAY_PAGE", 3)

    async def scenario() -> None:
        communicator = await connect(user, relay=False)
        job = await make_job(user)
        hub = get_hub()
        created = (await event_ids(job))[0]
        hub.dispatch(await batch([created], seq=1))
        assert await job_updates(communicator, 1) == [created]
        lost = [await progress(job, n) for n in range(1, 9)]  # batches 2-3: eight events, 3 a page
        latest = await progress(job, 9)
        hub.dispatch(await batch([latest], seq=4))
        assert sorted(await job_updates(communicator, 9)) == [*lost, latest]
        await communicator.disconnect()

    run(scenario)
