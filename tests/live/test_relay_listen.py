"""The relay on PostgreSQL reads the log when LISTEN/NOTIFY says events were committed (issue 14,
item 7: an idle relay that polled every 10 ms cost about 15 % of a core).

Each test gives the relay a poll far longer than its wait, so that only the path under test
can publish the event in time: a notification, the listener's read after it reconnects,
or the safety poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from jobs import services
from jobs.models import Job, JobEvent
from live.relay import ALL_GROUP, NOTIFY_CHANNEL, EventRelay
from tests.conftest import REQUIRE_SERVICES
from tests.live.test_relay import RecordingLayer, progress

pytestmark = pytest.mark.django_db(transaction=True)

NEVER = 3600.0  # a poll that never comes within a test
WAIT = 10.0


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL is required in this run")
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (CI runs this); SQLite polls")


async def published(layer: RecordingLayer, event_id: int) -> None:
    async def arrived() -> None:
        while (ALL_GROUP, event_id) not in layer.sent:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(arrived(), WAIT)


def run_relay(relay: EventRelay, scenario: Callable[[], Awaitable[None]]) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            while relay.tracker is None or relay.listener is None or not relay.listener.listening:
                await asyncio.sleep(0.01)
            await scenario()
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)

    async_to_sync(go)()


def new_job(user: Any) -> Job:
    return services.job_enqueue(job_type="demo", params={}, user=user)


def test_a_commit_of_events_wakes_the_relay_long_before_its_poll(user: Any, settings: Any) -> None:
    settings.JOBADMIN_RELAY_SAFETY_POLL = NEVER
    layer = RecordingLayer()
    relay = EventRelay(layer=layer, poll=NEVER, grace=30, listen=True, stats_wanted=lambda: False)
    job = new_job(user)

    async def scenario() -> None:
        await asyncio.sleep(0.2)  # idle: waiting for a notification
        event_id = await asyncio.to_thread(progress, job, 1)
        await published(layer, event_id)

    run_relay(relay, scenario)


def test_what_commits_while_the_listener_reconnects_is_read_when_it_listens_again(user: Any, settings: Any) -> None:
    settings.JOBADMIN_RELAY_SAFETY_POLL = NEVER
    layer = RecordingLayer()
    relay = EventRelay(layer=layer, poll=NEVER, grace=30, listen=True, stats_wanted=lambda: False)
    job = new_job(user)

    def end_the_listeners_session() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                    [f"LISTEN {NOTIFY_CHANNEL}"],
                )
                assert cursor.fetchone() is not None
        finally:
            connection.close()

    async def scenario() -> None:
        listener = relay.listener
        assert listener is not None
        await asyncio.to_thread(end_the_listeners_session)
        while listener.listening:  # until it noticed
            await asyncio.sleep(0.005)
        event_id = await asyncio.to_thread(progress, job, 1)  # nobody listens: no notification
        await published(layer, event_id)

    run_relay(relay, scenario)


def test_without_a_notification_the_safety_poll_still_reads_the_log(user: Any, settings: Any) -> None:
    settings.JOBADMIN_RELAY_SAFETY_POLL = 0.3
    layer = RecordingLayer()
    relay = EventRelay(layer=layer, poll=NEVER, grace=30, listen=True, stats_wanted=lambda: False)
    job = new_job(user)
    table = JobEvent._meta.db_table

    def commit_an_event_silently() -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER jobadmin_event_notify")
        try:
            return progress(job, 1)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER jobadmin_event_notify")
            connection.close()  # this thread's: the test database must be droppable

    async def scenario() -> None:
        event_id = await asyncio.to_thread(commit_an_event_silently)
        await published(layer, event_id)

    run_relay(relay, scenario)


def test_the_relay_listens_on_postgresql_unless_told_not_to(settings: Any) -> None:
    assert EventRelay(layer=RecordingLayer()).listen is True
    settings.JOBADMIN_RELAY_LISTEN = False
    assert EventRelay(layer=RecordingLayer()).listen is False


def test_a_bulk_enqueue_wakes_the_relay_and_every_one_of_its_events_is_published(user: Any, settings: Any) -> None:
    # On PostgreSQL a bulk enqueue writes its rows with COPY (jobs.rows.insert_many): COPY
    # fires the log's statement trigger as an INSERT does.
    settings.JOBADMIN_RELAY_SAFETY_POLL = NEVER
    layer = RecordingLayer()
    relay = EventRelay(layer=layer, poll=NEVER, grace=30, listen=True, stats_wanted=lambda: False)

    def enqueue_many() -> list[int]:
        try:
            jobs = services.jobs_enqueue_many(members=[{"type": "demo", "params": {}}] * 300, user=user)
            return list(JobEvent.objects.filter(job__in=jobs).order_by("id").values_list("id", flat=True))
        finally:
            connection.close()

    async def scenario() -> None:
        await asyncio.sleep(0.2)  # idle: waiting for a notification
        event_ids = await asyncio.to_thread(enqueue_many)
        assert len(event_ids) == 300
        for event_id in event_ids:
            await published(layer, event_id)

    run_relay(relay, scenario)
