"""The ``/ws/jobs/`` consumer with Channels' WebsocketCommunicator: auth, every message, every error, permissions.

The relay runs inside the test's event loop (as in the web process on the embedded
default), so an event written to the log reaches subscribed sockets for real.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from jobs import services
from jobs.events import record_event, record_job_event
from jobs.models import EventKind, Job
from live import messages
from live.consumers import CONFLATE_AT, STALE_AFTER, JobsConsumer
from live.relay import get_hub, stop_hub
from tests.factories import UserFactory, alert_payload

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


@pytest.fixture(autouse=True)
def _relay_in_test_loop(settings: Any) -> None:
    # With REDIS_URL the relay normally lives in `manage.py monitor`; here it runs in the test's loop.
    settings.JOBADMIN_RELAY_IN_WEB = True
    settings.JOBADMIN_RELAY_POLL = 0.005


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def wrapped() -> None:
        try:
            await scenario()
        finally:
            await stop_hub()

    async_to_sync(wrapped)()


def asgi_app() -> Any:
    from jobadmin.asgi import application

    return application


async def connect(user: Any, *, welcome: bool = True, relay: bool = True) -> WebsocketCommunicator:
    """A socket of ``user``, its welcome read. ``relay``: the test needs the relay in its loop, and
    fails here at once when none runs. With ``REDIS_URL`` the relay is ``monitor``'s unless
    ``JOBADMIN_RELAY_IN_WEB`` (``_relay_in_test_loop``): without it nothing is published live,
    events come only from a subscription's catch-up reads, and never on the socket's own user
    channel (it has none), which once read as "a socket that left a channel stops receiving its
    own user's events" on Redis alone. ``relay=False``: the test hands the hub events itself."""
    communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    if welcome:
        message = await receive(communicator)
        assert message["type"] == "welcome"
    hub = get_hub()
    await hub.start()
    assert hub.relay is not None or not relay, (
        "no relay runs in this test's loop, so nothing is published live: use the "
        "_relay_in_test_loop fixture, or connect(..., relay=False) if the test publishes itself"
    )
    # The relay starts from the log's latest event on its first read: an event committed
    # before that read is "from before the relay started" and never published live.
    while hub.relay is not None and hub.relay.tracker is None:
        await asyncio.sleep(0.005)
    return communicator


async def receive(communicator: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict[str, Any]:
    message = json.loads(await communicator.receive_from(timeout=timeout))
    jsonschema.validate(message, messages.SCHEMAS[message["type"]])
    return message


async def send(communicator: WebsocketCommunicator, **message: Any) -> None:
    await communicator.send_to(text_data=json.dumps(message))


async def receive_until(communicator: WebsocketCommunicator, type_name: str) -> list[dict[str, Any]]:
    """Everything received up to and including the first message of ``type_name``."""
    out = []
    while True:
        message = await receive(communicator)
        out.append(message)
        if message["type"] == type_name:
            return out


@database_sync_to_async
def make_job(user: Any) -> Job:
    return services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 0}, user=user)


@database_sync_to_async
def progress(job: Job, processed: int) -> int:
    with transaction.atomic():
        job.processed_items = processed
        job.save(update_fields=["processed_items"])
        return record_job_event(job=job, kind=EventKind.PROGRESS).id


@database_sync_to_async
def alert_event() -> int:
    alert = alert_payload()
    with transaction.atomic():
        return record_event(kind=EventKind.ALERT, payload={"alert": alert}).id


@database_sync_to_async
def event_ids(job: Job) -> list[int]:
    return list(job.events.order_by("id").values_list("id", flat=True))


async def assert_silent(communicator: WebsocketCommunicator, wait: float = 0.3) -> None:
    assert await communicator.receive_nothing(timeout=wait)


# --- authentication and origin -------------------------------------------------------------
def test_unauthenticated_socket_is_closed_with_4401(db: Any) -> None:
    async def scenario() -> None:
        communicator = WebsocketCommunicator(asgi_app(), "/ws/jobs/")
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        output = await communicator.receive_output(timeout=TIMEOUT)
        assert output == {"type": "websocket.close", "code": 4401}

    run(scenario)


def test_token_in_query_string_authenticates_and_a_bad_token_does_not(user: Any) -> None:
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=user).key

    async def scenario() -> None:
        good = WebsocketCommunicator(asgi_app(), f"/ws/jobs/?token={key}")
        assert (await good.connect(timeout=TIMEOUT))[0]
        welcome = await receive(good)
        assert welcome["user"]["id"] == user.pk
        await good.disconnect()
        bad = WebsocketCommunicator(asgi_app(), "/ws/jobs/?token=nope")
        assert (await bad.connect(timeout=TIMEOUT))[0]
        assert (await bad.receive_output(timeout=TIMEOUT))["code"] == 4401

    run(scenario)


def test_session_cookie_authenticates(user: Any) -> None:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            asgi_app(),
            "/ws/jobs/",
            headers=[(b"cookie", cookie), (b"host", b"localhost"), (b"origin", b"http://localhost")],
        )
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        assert (await receive(communicator))["user"]["username"] == user.username
        await communicator.disconnect()

    run(scenario)


def test_foreign_origin_is_refused(user: Any) -> None:
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=user).key

    async def scenario() -> None:
        evil = WebsocketCommunicator(
            asgi_app(), f"/ws/jobs/?token={key}", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await evil.connect(timeout=TIMEOUT)
        assert not connected
        own = WebsocketCommunicator(
            asgi_app(), f"/ws/jobs/?token={key}", headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
        )
        assert (await own.connect(timeout=TIMEOUT))[0]
        await own.disconnect()

    run(scenario)


# --- welcome, auto-join, live updates --------------------------------------------------------
def test_welcome_then_own_jobs_arrive_live_without_subscribing(user: Any, other_user: Any) -> None:
    async def scenario() -> None:
        communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        communicator.scope["user"] = user
        await communicator.connect(timeout=TIMEOUT)
        welcome = await receive(communicator)
        assert welcome["channels"] == [f"user:{user.pk}"]
        assert welcome["latest_event_id"] >= 0
        await make_job(other_user)  # not theirs: never delivered
        job = await make_job(user)
        update = await receive(communicator)
        assert update["type"] == "job-update"
        assert update["job"]["id"] == str(job.id)
        assert update["kind"] == "created"
        assert update["event_id"] == (await event_ids(job))[0]
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


def test_subscribe_since_replays_the_gap_then_goes_live_without_duplicates(user: Any) -> None:
    async def scenario() -> None:
        job = await make_job(user)
        since = (await event_ids(job))[-1]
        missed = [await progress(job, 1), await progress(job, 2)]
        communicator = await connect(user)
        # The same events also reach the socket live through the auto-joined user channel
        # while the replay runs: each must still arrive once.
        await send(communicator, type="subscribe", channel=f"job:{job.id}", since=since)
        received = await receive_until(communicator, "subscribed")
        updates = [m["event_id"] for m in received if m["type"] == "job-update"]
        assert updates == missed
        assert received[-1]["replayed"] == 2
        live = await progress(job, 3)
        assert (await receive(communicator))["event_id"] == live
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


def test_a_replay_does_not_resend_what_the_socket_already_got_live(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        job = await make_job(user)
        live = [(await receive(communicator))["event_id"]]
        live.append(await progress(job, 1))
        assert (await receive(communicator))["event_id"] == live[1]
        await send(communicator, type="subscribe", channel=f"job:{job.id}", since=0)
        subscribed = await receive(communicator)
        assert subscribed["type"] == "subscribed"
        assert subscribed["replayed"] == 0
        newer = await progress(job, 2)
        assert (await receive(communicator))["event_id"] == newer
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


def test_subscribe_without_since_replays_nothing(user: Any) -> None:
    async def scenario() -> None:
        job = await make_job(user)
        await progress(job, 1)
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"job:{job.id}")
        subscribed = await receive(communicator)
        assert subscribed["type"] == "subscribed"
        assert subscribed["replayed"] == 0
        assert subscribed["since"] is None
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


def test_unsubscribe_stops_delivery_and_unknown_unsubscribe_is_an_error(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        await send(communicator, type="unsubscribe", channel=f"user:{user.pk}")
        assert await receive(communicator) == {"type": "unsubscribed", "channel": f"user:{user.pk}"}
        await make_job(user)
        await assert_silent(communicator)
        await send(communicator, type="unsubscribe", channel="all")
        error = await receive(communicator)
        assert error["code"] == messages.UNKNOWN_CHANNEL
        await communicator.disconnect()

    run(scenario)


def test_ping_gets_pong_with_the_clients_timestamp(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        await send(communicator, type="ping", ts=123.5)
        assert await receive(communicator) == {"type": "pong", "ts": 123.5}
        await communicator.disconnect()

    run(scenario)


def test_request_stats_answers_with_the_stats_body(staff_user: Any) -> None:
    from monitoring.stats import stats_summary

    async def scenario() -> None:
        communicator = await connect(staff_user)
        await send(communicator, type="request-stats")
        message = await receive(communicator)
        assert message["type"] == "job-stats"
        expected = await database_sync_to_async(stats_summary)()
        assert set(message["stats"]) == set(json.loads(json.dumps(expected, default=str)))
        await communicator.disconnect()

    run(scenario)


def test_stats_subscribers_get_a_broadcast_every_interval(staff_user: Any) -> None:
    async def scenario() -> None:
        sockets = [await connect(staff_user) for _ in range(3)]
        for communicator in sockets:
            await send(communicator, type="subscribe", channel="stats")
            assert (await receive(communicator))["type"] == "subscribed"
        hub = get_hub()
        assert hub.relay is not None
        for communicator in sockets:  # JOB_STATS_INTERVAL is 1 s in the tests
            assert (await receive(communicator, timeout=3))["type"] == "job-stats"
        # Computed once per interval, however many subscribers.
        computed = hub.relay.stats_computed
        await asyncio.sleep(1.2)
        assert hub.relay.stats_computed - computed <= 2
        for communicator in sockets:
            await communicator.disconnect()

    run(scenario)


def test_alerts_reach_staff_subscribers(staff_user: Any, user: Any) -> None:
    async def scenario() -> None:
        staff = await connect(staff_user)
        plain = await connect(user)
        await send(staff, type="subscribe", channel="alerts")
        assert (await receive(staff))["type"] == "subscribed"
        event_id = await alert_event()
        alert = await receive(staff)
        assert alert["type"] == "job-alert"
        assert alert["event_id"] == event_id
        assert alert["alert"]["rule"] == "failure-burst"
        await assert_silent(plain)
        await staff.disconnect()
        await plain.disconnect()

    run(scenario)


def test_all_channel_delivers_every_users_jobs_to_staff(staff_user: Any, user: Any, other_user: Any) -> None:
    async def scenario() -> None:
        staff = await connect(staff_user)
        await send(staff, type="subscribe", channel="all")
        assert (await receive(staff))["type"] == "subscribed"
        first = await make_job(user)
        second = await make_job(other_user)
        got = {(await receive(staff))["job"]["id"], (await receive(staff))["job"]["id"]}
        assert got == {str(first.id), str(second.id)}
        await staff.disconnect()

    run(scenario)


# --- the permission matrix ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("who", "channel", "outcome"),
    [
        ("user", "own-job", "subscribed"),
        ("user", "other-job", messages.FORBIDDEN),
        ("user", "own-user", "subscribed"),
        ("user", "other-user", messages.FORBIDDEN),
        ("user", "all", messages.FORBIDDEN),
        ("user", "alerts", messages.FORBIDDEN),
        ("user", "stats", messages.FORBIDDEN),
        ("other", "own-job", messages.FORBIDDEN),
        ("staff", "own-job", "subscribed"),
        ("staff", "other-user", "subscribed"),
        ("staff", "all", "subscribed"),
        ("staff", "alerts", "subscribed"),
        ("staff", "stats", "subscribed"),
        ("user", "missing-job", messages.FORBIDDEN),  # the same answer as another user's job
        ("bare-staff", "other-user", messages.FORBIDDEN),  # is_staff alone grants nothing
        ("bare-staff", "all", messages.FORBIDDEN),
        ("bare-staff", "stats", messages.FORBIDDEN),
        ("staff", "missing-job", messages.FORBIDDEN),
        ("user", "job:not-a-uuid", messages.UNKNOWN_CHANNEL),
        ("user", "nonsense", messages.UNKNOWN_CHANNEL),
        ("staff", "user:abc", messages.UNKNOWN_CHANNEL),
    ],
)
def test_permission_matrix(who: str, channel: str, outcome: str, user: Any, other_user: Any, staff_user: Any) -> None:
    staff = staff_user
    own_job = services.job_enqueue(job_type="demo", params={}, user=user)
    other_job = services.job_enqueue(job_type="demo", params={}, user=other_user)
    channels = {
        "own-job": f"job:{own_job.id}",
        "other-job": f"job:{other_job.id}",
        "own-user": f"user:{user.pk}",
        "other-user": f"user:{other_user.pk}",
        "missing-job": f"job:{uuid.uuid4()}",
    }
    subscriber = {"user": user, "other": other_user, "staff": staff, "bare-staff": UserFactory(is_staff=True)}[who]

    async def scenario() -> None:
        communicator = await connect(subscriber)
        await send(communicator, type="subscribe", channel=channels.get(channel, channel))
        reply = await receive(communicator)
        if outcome == "subscribed":
            assert reply["type"] == "subscribed"
        else:
            assert reply["type"] == "error"
            assert reply["code"] == outcome
            # The socket stays open.
            await send(communicator, type="ping")
            assert (await receive(communicator))["type"] == "pong"
        await communicator.disconnect()

    run(scenario)


def test_forbidden_job_subscription_leaks_no_updates(user: Any, other_user: Any) -> None:
    async def scenario() -> None:
        job = await make_job(other_user)
        communicator = await connect(user)
        await send(communicator, type="subscribe", channel=f"job:{job.id}", since=0)
        assert (await receive(communicator))["code"] == messages.FORBIDDEN
        await progress(job, 1)
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", messages.BAD_JSON),
        ("[1, 2]", messages.BAD_MESSAGE),
        ('{"no": "type"}', messages.BAD_MESSAGE),
        ('{"type": "launch-missiles"}', messages.UNKNOWN_TYPE),
        ('{"type": "subscribe", "channel": "all", "since": "yesterday"}', messages.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": 7}', messages.UNKNOWN_CHANNEL),
        (json.dumps({"type": "ping", "pad": "x" * 5000}), messages.TOO_LARGE),
    ],
)
def test_bad_frames_get_an_error_and_the_socket_stays_open(user: Any, frame: str, code: str) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        await communicator.send_to(text_data=frame)
        error = await receive(communicator)
        assert error["type"] == "error"
        assert error["code"] == code
        await send(communicator, type="ping")
        assert (await receive(communicator))["type"] == "pong"
        await communicator.disconnect()

    run(scenario)


def test_a_burst_over_the_rate_limit_gets_one_error_and_the_socket_stays_open(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        for _ in range(60):
            await send(communicator, type="ping")
        replies = []
        while not await communicator.receive_nothing(timeout=0.2):
            replies.append(await receive(communicator))
        assert 40 <= [r["type"] for r in replies].count("pong") < 50  # the burst, plus what refilled meanwhile
        assert [r["code"] for r in replies if r["type"] == "error"] == [messages.RATE_LIMITED]
        await asyncio.sleep(0.2)  # tokens refill
        await send(communicator, type="ping")
        assert (await receive(communicator))["type"] == "pong"
        await communicator.disconnect()

    run(scenario)


def test_a_client_that_keeps_flooding_is_closed_with_4429(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        for _ in range(300):
            await send(communicator, type="ping")
        closed = None
        for _ in range(400):
            output = await communicator.receive_output(timeout=TIMEOUT)
            if output["type"] == "websocket.close":
                closed = output
                break
        assert closed == {"type": "websocket.close", "code": messages.CLOSE_FLOOD}

    run(scenario)


# --- delivery under overload -----------------------------------------------------------------
def test_progress_is_conflated_when_behind_but_status_changes_are_kept() -> None:
    consumer = JobsConsumer()
    consumer.init_state(None)
    job = "j1"
    for event_id in range(1, CONFLATE_AT + 1):  # fill the outbox with other jobs' events
        consumer.deliver(event_id, f"other-{event_id}", "created", f"e{event_id}")
    consumer.deliver(100, job, "progress", "p100")
    consumer.deliver(101, job, "progress", "p101")  # replaces p100 in place
    consumer.deliver(102, job, "paused", "s102")  # a status change is never conflated
    consumer.deliver(103, job, "progress", "p103")
    consumer.deliver(104, job, "progress", "p104")  # replaces p103, which is after the status change
    tail = [entry.text for entry in list(consumer.outbox)[CONFLATE_AT:]]
    assert tail == ["p101", "s102", "p104"]


def test_progress_is_not_conflated_when_the_socket_keeps_up() -> None:
    consumer = JobsConsumer()
    consumer.init_state(None)
    now = time.time()
    consumer.deliver(1, "j1", "progress", "p1", now)  # fresh: queued for less than STALE_AFTER
    consumer.deliver(2, "j1", "progress", "p2", now)
    consumer.deliver(3, "j2", "progress", "p3")  # time of the change unknown: never stale
    consumer.deliver(4, "j2", "progress", "p4")
    assert [entry.text for entry in consumer.outbox] == ["p1", "p2", "p3", "p4"]


def test_a_socket_behind_in_time_conflates_progress_even_with_a_short_outbox() -> None:
    """One watched job never fills the outbox; its frames still conflate once they are stale."""
    consumer = JobsConsumer()
    consumer.init_state(None)
    stale = time.time() - STALE_AFTER - 0.05
    consumer.deliver(1, "j1", "progress", "p1", stale)
    consumer.deliver(2, "j1", "progress", "p2", stale)  # p1 is stale and unsent: replaced in place
    consumer.deliver(3, "j1", "progress", "p3", time.time())  # p2 too
    consumer.deliver(4, "j1", "completed", "s4", time.time())  # a status change is never conflated
    consumer.deliver(5, "j1", "progress", "p5", stale)  # after the status change: queued afresh
    assert [(entry.event_id, entry.text) for entry in consumer.outbox] == [(3, "p3"), (4, "s4"), (5, "p5")]
    consumer.outbox.clear()
    consumer.pending_progress.clear()  # as the sender does once they are out
    consumer.deliver(6, "j1", "progress", "p6", stale)  # nothing of j1 queued: sent, however old
    assert [entry.text for entry in consumer.outbox] == ["p6"]


@database_sync_to_async
def burst(job: Job, count: int) -> list[int]:
    with transaction.atomic():
        return [record_job_event(job=job, kind=EventKind.LOG).id for _ in range(count)]


def test_a_burst_of_400_non_progress_events_arrives_complete_and_in_order(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        job = await make_job(user)
        assert (await receive(communicator))["kind"] == "created"
        ids = await burst(job, 400)  # one relay read; more than the conflation threshold, none conflatable
        got = [(await receive(communicator))["event_id"] for _ in ids]
        assert got == ids
        await communicator.disconnect()

    run(scenario)


def test_catch_ups_that_fall_due_together_share_one_read_per_channel(user: Any, monkeypatch: Any) -> None:
    from live import consumers

    first, second = (services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}) for _ in range(2))
    ids = [record_job_event(job=first, kind=EventKind.PROGRESS).id for _ in range(3)]
    other = record_job_event(job=second, kind=EventKind.PROGRESS).id
    hops: list[dict[str, int]] = []
    real = consumers._event_ids_of_groups

    async def counted(anchors: dict[str, int], limit: int) -> dict[str, list[int]]:
        hops.append(dict(anchors))
        return await real(anchors, limit)

    monkeypatch.setattr(consumers, "_event_ids_of_groups", counted)
    monkeypatch.setattr(consumers._SharedIdReads, "SLOT", 0.2)

    async def scenario() -> None:
        reads = consumers._SharedIdReads()
        a, b = f"job.{first.pk}", f"job.{second.pk}"
        results = await asyncio.gather(
            reads.ids_after(a, ids[0], 500),
            reads.ids_after(a, 0, 500),
            reads.ids_after(a, ids[1], 500),
            reads.ids_after(b, 0, 500),
        )
        assert results[0] == ids[1:]
        assert results[1][-3:] == ids  # the job's `created` event comes first
        assert results[2] == ids[2:]
        assert results[3][-1] == other

    run(scenario)
    assert len(hops) == 1, "one hop to the database for every socket due in the slot"
    assert hops[0][f"job.{first.pk}"] == 0, "read once per channel, from the smallest anchor"


def test_one_flush_per_loop_turn_sends_every_socket_its_frames_in_order_and_holds_a_replaying_one() -> None:
    """The hub's frames are queued; one task per turn drains every socket that got some."""
    from live import consumers

    async def scenario() -> None:
        sent: dict[int, list[str]] = {}
        sockets = []
        for index in range(3):
            consumer = JobsConsumer()
            consumer.init_state(None)
            consumer.flusher = consumers._flusher()

            async def base_send(message: dict[str, Any], index: int = index) -> None:
                assert message["type"] == "websocket.send"
                sent.setdefault(index, []).append(message["text"])

            consumer.base_send = base_send
            sockets.append(consumer)
        sockets[2].replaying = 1  # its replay is still going out
        tasks_before = len(asyncio.all_tasks())
        for event_id in (1, 2, 3):
            for index, consumer in enumerate(sockets):
                consumer.deliver(event_id, f"job-{index}", "created", f"s{index}e{event_id}")
        assert sent == {}  # nothing is sent from inside the hub's dispatch
        assert len(asyncio.all_tasks()) == tasks_before + 1  # one flush task for all sockets
        await asyncio.sleep(0)
        assert sent == {0: ["s0e1", "s0e2", "s0e3"], 1: ["s1e1", "s1e2", "s1e3"]}
        assert [entry.text for entry in sockets[2].outbox] == ["s2e1", "s2e2", "s2e3"]
        sockets[2].replaying = 0  # as _subscribe does when the replay is out
        sockets[2]._flush_soon()
        await asyncio.sleep(0)
        assert sent[2] == ["s2e1", "s2e2", "s2e3"]
        sockets[0].deliver(2, "job-0", "created", "again")  # already sent on this socket
        await asyncio.sleep(0)
        assert sent[0] == ["s0e1", "s0e2", "s0e3"]

    run(scenario)
