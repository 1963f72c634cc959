"""The relay: each event published once to its groups, out-of-order commits, layer and database outages."""

from __future__ import annotations

import asyncio
import gc
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from django.db import InterfaceError, OperationalError, connection, connections, transaction

from jobs import services
from jobs.events import record_event, record_job_event
from jobs.models import EventKind, Job, JobEvent
from live.relay import (
    _EVENT_FIELDS,
    AGGREGATE,
    AGGREGATE_SPACING,
    ALL_GROUP,
    EVENTS_GROUP,
    EVENTS_TYPE,
    GAP_SWEEP,
    MAX_GAPS,
    EventRelay,
    GapTracker,
    events_after,
    events_by_ids,
    with_batch_aggregates,
)
from live.transport import tune_gc

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingLayer(InMemoryChannelLayer):
    """The in-process layer, recording what was sent, and able to fail like a layer that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, int]] = []  # (a group the event is for, event id), in publishing order
        self.messages = 0  # layer messages that carried events
        self.failing = False

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.failing:
            raise ConnectionError("layer unreachable")
        if message["type"] == EVENTS_TYPE:
            assert group == EVENTS_GROUP
            self.messages += 1
            self.sent.extend((target, event["id"]) for event in message["events"] for target in event["groups"])
        await super().group_send(group, message)


def event_groups(job: Job) -> set[str]:
    return {f"job.{job.id}", f"user.{job.user_id}", ALL_GROUP}


def steps(relay: EventRelay, rounds: int = 5) -> None:
    async def go() -> None:
        try:
            for _ in range(rounds):
                await relay.step()
        finally:
            await relay.close()

    async_to_sync(go)()


def new_relay(layer: RecordingLayer) -> EventRelay:
    relay = EventRelay(layer=layer, poll=0.001, grace=30)
    steps(relay, 1)  # the first read places the cursor at the latest event
    return relay


def test_gap_tracker_keeps_ids_skipped_below_the_cursor_until_they_appear_or_expire() -> None:
    tracker = GapTracker(cursor=10, grace=5)
    assert tracker.absorb([11, 13], now=0) == [11, 13]
    assert set(tracker.gaps) == {12}
    assert tracker.absorb([12, 13], now=1) == [12]  # 12 committed late: published; 13 not again
    assert tracker.gaps == {}
    tracker.absorb([16], now=2)
    tracker.expire(now=7.5)  # 14 and 15 never appeared (rolled back): given up after the grace
    assert tracker.gaps == {}
    assert tracker.cursor == 16
    tracker.absorb([50_016], now=8)  # a huge jump (a log emptied by retention): only the top is watched
    assert sorted(tracker.gaps) == list(range(50_016 - MAX_GAPS, 50_016))


def test_young_gaps_are_read_again_on_every_poll_older_ones_in_a_sweep() -> None:
    tracker = GapTracker(cursor=10, grace=30)
    tracker.absorb([12], now=100)
    assert tracker.due(now=100) == [11]  # the first call sweeps
    assert tracker.due(now=100.2) == [11]  # young: on every poll
    assert tracker.due(now=101.2) == [11]  # old now, but a sweep is due
    tracker.absorb([15], now=101.4)
    assert sorted(tracker.due(now=101.5)) == [13, 14]  # 11 is old and no sweep is due
    assert sorted(tracker.due(now=101.2 + GAP_SWEEP)) == [11, 13, 14]  # the next sweep


def test_each_event_is_published_once_to_the_groups_it_belongs_to(user: Any) -> None:
    layer = RecordingLayer()
    relay = new_relay(layer)
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    services.job_cancel(job=job, actor=user)
    steps(relay)
    ids = list(JobEvent.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    assert len(ids) >= 2
    assert sorted(layer.sent) == sorted((group, i) for i in ids for group in event_groups(job))
    assert [i for group, i in layer.sent if group == ALL_GROUP] == ids  # in id order


def test_a_burst_of_events_travels_in_one_layer_message_per_read(user: Any) -> None:
    layer = RecordingLayer()
    relay = new_relay(layer)
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    for processed in range(1, 41):
        progress(job, processed)
    steps(relay, 2)
    ids = list(JobEvent.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    assert len(ids) == 41
    assert [i for group, i in layer.sent if group == ALL_GROUP] == ids
    assert layer.messages == 1  # not one group_send per event and group


def test_a_read_computes_each_batchs_aggregate_once_however_many_of_its_members_changed(
    user: Any, django_assert_num_queries: Any
) -> None:
    member = {"type": "demo", "params": {"items": 2, "delay_ms": 0}}
    batches = [services.batch_create(name=name, members=[member] * 3, user=user) for name in ("a", "b")]
    for batch in batches:
        for job in batch.members.all():
            services.job_cancel(job=job, actor=user)
    rows = events_after(after=0, limit=500)
    assert sum(1 for row in rows if row["kind"] == EventKind.CANCELLED) == 6
    with django_assert_num_queries(2):  # the batch rows, and one GROUP BY over their members
        with_batch_aggregates(rows)
    last = {row["job_id"]: row[AGGREGATE] for row in rows if row["kind"] == EventKind.CANCELLED}
    assert {aggregate["status"] for aggregate in last.values()} == {"cancelled"}
    assert {aggregate["id"] for aggregate in last.values()} == {batch.pk for batch in batches}


def test_an_aggregate_that_cannot_be_read_costs_the_aggregate_not_the_events(user: Any, monkeypatch: Any) -> None:
    layer = RecordingLayer()
    relay = new_relay(layer)
    batch = services.batch_create(name="x", members=[{"type": "demo", "params": {}}], user=user)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("the database went away mid-read")

    monkeypatch.setattr("live.relay.batch_summaries", broken)
    steps(relay)
    member = batch.members.get()
    assert (f"batch.{batch.pk}", JobEvent.objects.get(job=member).id) in layer.sent


def test_while_a_batch_is_busy_reads_are_spaced_so_each_takes_more_of_its_events(user: Any, monkeypatch: Any) -> None:
    waits: list[float] = []
    sleep = asyncio.sleep

    async def recorded(delay: float, *args: Any, **kwargs: Any) -> Any:
        waits.append(delay)
        return await sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    layer = RecordingLayer()
    relay = new_relay(layer)
    services.job_enqueue(job_type="demo", params={}, user=user)
    steps(relay, 2)
    assert max(waits, default=0) == 0  # no batch: reads as soon as events come
    batch = services.batch_create(name="x", members=[{"type": "demo", "params": {}}] * 2, user=user)
    first, second = batch.members.order_by("created_at", "id")
    steps(relay, 1)  # the members' created events, with their aggregate
    services.job_cancel(job=first, actor=user)
    services.job_cancel(job=second, actor=user)
    waits.clear()
    steps(relay, 1)
    assert 0 < max(waits) <= AGGREGATE_SPACING
    cancelled = [JobEvent.objects.get(job=job, kind=EventKind.CANCELLED).id for job in (first, second)]
    assert [i for group, i in layer.sent if group == f"batch.{batch.pk}"][-2:] == cancelled  # one read, both


def test_the_relays_reads_return_the_rows_the_orm_returns(user: Any) -> None:
    """On SQLite the relay reads through one aggregated row (see ``_sqlite_events``): same rows."""
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    progress(job, 7)
    record_event(kind=EventKind.ALERT, payload={"alert": {"message": "naïve ✓", "value": 0.5, "nested": [1, None]}})
    on_the_second = JobEvent.objects.create(
        kind=EventKind.LOG, job=job, owner_id=None, payload={}, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    first = JobEvent.objects.order_by("id").values_list("id", flat=True).first() or 0
    orm = list(JobEvent.objects.filter(id__gte=first).order_by("id").values(*_EVENT_FIELDS))
    assert len(orm) >= 4
    assert events_after(after=first - 1, limit=500) == orm
    assert events_after(after=first, limit=2) == orm[1:3]
    assert events_by_ids(ids=[on_the_second.id, first]) == [orm[0], orm[-1]]
    assert events_after(after=on_the_second.id, limit=500) == []


def test_events_from_before_the_relay_started_are_not_published(user: Any) -> None:
    services.job_enqueue(job_type="demo", params={}, user=user)
    layer = RecordingLayer()
    new_relay(layer)
    assert layer.sent == []


def test_after_a_layer_outage_the_relay_catches_up_and_publishes_each_event_once(user: Any) -> None:
    layer = RecordingLayer()
    relay = new_relay(layer)
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    layer.failing = True  # the layer is away when the first event is read

    async def outage() -> None:
        with pytest.raises(ConnectionError):
            await relay.step()  # read, not published: kept in hand
        for processed in range(1, 4):  # the job goes on while the layer is away
            await asyncio.to_thread(progress, job, processed)
            with pytest.raises(ConnectionError):
                await relay.step()
        layer.failing = False

    async_to_sync(outage)()
    steps(relay, 10)
    ids = list(JobEvent.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    assert len(ids) == 4
    assert sorted(layer.sent) == sorted((group, i) for i in ids for group in event_groups(job))


def progress(job: Job, processed: int) -> int:
    try:
        with transaction.atomic():
            fresh = Job.objects.select_for_update().get(pk=job.pk)
            fresh.processed_items = processed
            fresh.save(update_fields=["processed_items"])
            return record_job_event(job=fresh, kind=EventKind.PROGRESS).id
    finally:
        connections.close_all()


class LateCommit:
    """An event inserted in a transaction held open in a thread: its id is taken, invisible
    until ``commit()`` (on PostgreSQL a higher id can commit, and be read, first)."""

    def __init__(self, job: Job) -> None:
        self.inserted = threading.Event()
        self.release = threading.Event()
        self.ids: list[int] = []
        self.thread = threading.Thread(target=self._write, args=(job,))
        self.thread.start()
        assert self.inserted.wait(10)
        self.event_id = self.ids[0]

    def _write(self, job: Job) -> None:
        try:
            with transaction.atomic():
                self.ids.append(record_job_event(job=job, kind=EventKind.PROGRESS).id)
                self.inserted.set()
                self.release.wait(10)  # holds its id, uncommitted, while a higher id commits
        finally:
            connections.close_all()

    def commit(self) -> None:
        self.release.set()
        self.thread.join(10)


def test_an_event_that_commits_after_a_higher_id_is_still_published(user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("out-of-order commits need PostgreSQL's concurrent writers (CI runs this)")
    first = services.job_enqueue(job_type="demo", params={}, user=user)
    second = services.job_enqueue(job_type="demo", params={}, user=user)
    layer = RecordingLayer()
    relay = new_relay(layer)
    late = LateCommit(first)
    fast_id = progress(second, 1)
    assert fast_id > late.event_id
    steps(relay, 3)
    assert {i for _, i in layer.sent} == {fast_id}
    late.commit()
    steps(relay, 3)
    assert sorted(i for group, i in layer.sent if group == ALL_GROUP) == sorted([fast_id, late.event_id])


def test_after_losing_its_database_connection_the_relay_reconnects_and_catches_up(user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("killing the relay's database session needs PostgreSQL (CI runs this)")
    layer = RecordingLayer()
    relay = EventRelay(layer=layer, poll=0.001, grace=30)

    job = services.job_enqueue(job_type="demo", params={}, user=user)

    async def scenario() -> None:
        await relay.step()
        pid = await relay._run_db(lambda: connections["default"].cursor().connection.info.backend_pid)
        await asyncio.to_thread(kill_backend, pid)
        await asyncio.to_thread(progress, job, 1)  # written while the relay's session is dead
        with pytest.raises((OperationalError, InterfaceError)):
            await relay.step()
        for _ in range(5):
            await relay.step()
        await relay.close()

    async_to_sync(scenario)()
    ids = list(JobEvent.objects.filter(job=job, kind=EventKind.PROGRESS).values_list("id", flat=True))
    assert len(ids) == 1
    assert [i for group, i in layer.sent if group == ALL_GROUP] == ids


def kill_backend(pid: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        connections.close_all()


def test_a_web_process_collects_its_young_generation_less_often(settings: Any) -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        settings.JOBADMIN_WEB_GC_THRESHOLD = 0
        tune_gc()
        assert gc.get_threshold()[0] == 700  # 0 keeps Python's
        settings.JOBADMIN_WEB_GC_THRESHOLD = 20_000
        tune_gc()
        assert gc.get_threshold() == (20_000, *before[1:])
    finally:
        gc.set_threshold(*before)
