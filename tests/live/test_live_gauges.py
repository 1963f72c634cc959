"""The live layer's gauges in the cache: open websocket connections and the relay's event lag."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.utils import timezone

from jobs import services
from jobs.models import JobEvent
from live.consumers import JobsConsumer
from live.relay import (
    WS_REGISTRY_KEY,
    EventRelay,
    get_hub,
    stop_hub,
    ws_connections_store,
    ws_process_key,
)
from monitoring import metrics, prometheus
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3.0


@pytest.fixture(autouse=True)
def _fast_gauges(settings: Any) -> Any:
    settings.JOBADMIN_RELAY_IN_WEB = True
    settings.JOBADMIN_RELAY_POLL = 0.005
    settings.JOBADMIN_GAUGE_INTERVAL = 0.05
    cache.delete_many([metrics.WS_CONNECTIONS_CACHE_KEY, WS_REGISTRY_KEY, metrics.EVENT_LAG_CACHE_KEY])
    yield
    cache.delete_many([metrics.WS_CONNECTIONS_CACHE_KEY, WS_REGISTRY_KEY, metrics.EVENT_LAG_CACHE_KEY])


async def _connections() -> int:
    return await database_sync_to_async(prometheus.websocket_connections)()


async def _until_connections(expected: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (value := await _connections()) != expected:
        assert time.monotonic() < deadline, f"websocket_connections stayed {value}, expected {expected}"
        await asyncio.sleep(0.02)


async def _connect(user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    await communicator.receive_from(timeout=TIMEOUT)  # welcome
    return communicator


def test_open_sockets_are_counted_and_uncounted(db: Any) -> None:
    users = [UserFactory(), UserFactory()]

    async def scenario() -> None:
        try:
            first = await _connect(users[0])
            second = await _connect(users[1])
            await _until_connections(2)
            assert get_hub().sockets == 2
            await first.disconnect()
            await _until_connections(1)
            await second.disconnect()
            await _until_connections(0)
            assert await database_sync_to_async(cache.get)(metrics.WS_CONNECTIONS_CACHE_KEY) == 0
        finally:
            await stop_hub()

    async_to_sync(scenario)()


def test_an_unauthenticated_socket_is_not_counted(user: Any) -> None:
    async def scenario() -> None:
        try:
            counted = await _connect(user)
            await _until_connections(1)
            refused = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
            connected, _ = await refused.connect(timeout=TIMEOUT)
            assert connected  # accepted, then closed with 4401
            assert (await refused.receive_output(timeout=TIMEOUT))["type"] == "websocket.close"
            await asyncio.sleep(0.2)
            assert get_hub().sockets == 1
            assert await _connections() == 1
            await counted.disconnect()
            await _until_connections(0)
        finally:
            await stop_hub()

    async_to_sync(scenario)()


def test_the_gauge_sums_live_processes_and_drops_a_dead_one(db: Any) -> None:
    assert ws_connections_store(token="a", count=3) == 3
    assert ws_connections_store(token="b", count=2) == 5
    assert prometheus.websocket_connections() == 5
    # A process that died: its entry in the registry has expired, its count is not added.
    cache.set(ws_process_key("dead"), 40, timeout=30)
    registry = cache.get(WS_REGISTRY_KEY)
    registry["dead"] = time.time() - 1
    cache.set(WS_REGISTRY_KEY, registry, timeout=30)
    assert ws_connections_store(token="b", count=2) == 5
    assert "dead" not in cache.get(WS_REGISTRY_KEY)
    assert ws_connections_store(token="a", count=0) == 2
    assert cache.get(ws_process_key("a")) is None
    assert ws_connections_store(token="b", count=0) == 0
    assert prometheus.websocket_connections() == 0
    cache.delete(ws_process_key("dead"))


def test_publishing_events_sets_the_event_lag_then_idle_sets_zero(user: Any) -> None:
    relay = EventRelay(layer=InMemoryChannelLayer(), poll=0.001, grace=30)

    async def step() -> int:
        published = await relay.step()
        await relay.wait_gauges()  # the lag is written in the background
        return published

    async def close() -> None:
        await relay.close()

    try:
        async_to_sync(step)()  # the first read places the cursor; nothing to publish: caught up
        assert metrics.event_lag_ms() == 0.0
        job = services.job_enqueue(job_type="demo", params={}, user=user)
        # The event was written 5 s ago and the relay publishes it now: 5 s late.
        JobEvent.objects.filter(job=job).update(created_at=timezone.now() - timedelta(seconds=5))
        time.sleep(0.06)
        assert async_to_sync(step)() >= 1
        lag = metrics.event_lag_ms()
        assert lag is not None
        assert 5000 <= lag < 5000 + 60_000

        # Caught up and idle: 0, but not before the write interval has passed.
        assert async_to_sync(step)() == 0
        assert metrics.event_lag_ms() == lag
        time.sleep(0.06)
        async_to_sync(step)()
        assert metrics.event_lag_ms() == 0.0

        # Fresh events go out within milliseconds.
        services.job_cancel(job=job, actor=user)
        time.sleep(0.06)
        assert async_to_sync(step)() >= 1
        fresh = metrics.event_lag_ms()
        assert fresh is not None
        assert 0 < fresh < 2000
    finally:
        async_to_sync(close)()


def test_the_lag_is_written_at_most_once_per_interval(user: Any, settings: Any) -> None:
    settings.JOBADMIN_GAUGE_INTERVAL = 60
    relay = EventRelay(layer=InMemoryChannelLayer(), poll=0.001, grace=30)

    async def step() -> int:
        published = await relay.step()
        await relay.wait_gauges()
        return published

    async def close() -> None:
        await relay.close()

    try:
        async_to_sync(step)()
        job = services.job_enqueue(job_type="demo", params={}, user=user)
        async_to_sync(step)()
        first = metrics.event_lag_ms()
        assert first is not None
        JobEvent.objects.filter(job=job).update(created_at=timezone.now() - timedelta(seconds=5))
        services.job_cancel(job=job, actor=user)
        JobEvent.objects.filter(job=job).update(created_at=timezone.now() - timedelta(seconds=5))
        assert async_to_sync(step)() >= 1
        assert metrics.event_lag_ms() == first  # within the interval: not written again
        assert relay._lag_pending is not None
        assert relay._lag_pending >= 5000
    finally:
        async_to_sync(close)()
