"""The websocket consumer at ``/ws/jobs/`` (protocol: docs/websocket.md).

It forwards: permissions come from ``jobs.policy``, replay from the event log, live
events from the process's hub (``live.relay``). Each socket has a bounded outbox;
the outboxes that received frames are drained together once per event-loop turn (see
``_Flusher``); when a socket falls behind, progress events of a job are
conflated (the newest replaces a queued older one), status changes never are, and a socket
whose outbox still overflows is closed with 4408 so that its client resumes with ``since``.

"Behind" is measured in time, not only in queue length: a socket that watches one job
never has a long outbox, yet under overload its frames can wait seconds (in the layer, the
hub or the outbox). A job's progress still unsent when a newer one arrives, and already
``STALE_AFTER`` old (from the change's own time), is replaced by the newer one. A socket
that keeps up sends every frame (its queued progress is younger than that, or already
gone); the last progress of a job and every status change always go out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from jobs import policy
from jobs.models import EventKind
from live import messages
from live.middleware import Identity, identity_of, user_of
from live.relay import (
    ALERTS_GROUP,
    ALL_GROUP,
    STATS_GROUP,
    events_by_ids,
    get_hub,
    latest_event_id,
    replay_event_ids,
    replay_events,
    stats_body,
    with_batch_aggregates,
)
from live.relay import message_for as event_message

logger = logging.getLogger(__name__)

MAX_FRAME = 4096  # bytes of one client frame
RATE = 20.0  # client messages per second, sustained
BURST = 40.0
FLOOD_LIMIT = 200  # messages refused for rate before the socket is closed
CONFLATE_AT = 64  # outbox length from which progress is conflated, whatever its age
STALE_AFTER = 0.1  # seconds after the change from which a still-queued progress is replaced
OUTBOX_MAX = 5000
REPLAY_PAGE = 500
REPLAY_MAX = 10_000
SEEN_MAX = 8192
# After a subscription, the log is read again for what the live path may have missed: the
# layer can accept a group_add before its subscription is effective (a Redis that just came
# back), and an event published in that window reaches nobody. ``seen`` drops repeats.
CATCH_UP_AFTER = (1.0, 4.0)  # seconds after subscribing
# A catch-up read that fails (the database is away) is tried again, first after this many
# seconds, doubling up to the second figure, for as long as the socket stays subscribed.
CATCH_UP_RETRY = (0.25, 5.0)
# Live events wait this long after the welcome for the client's first message (a resuming
# client's subscriptions with ``since``), so that its replay comes first.
HOLD_AFTER_WELCOME = 0.25
CATCH_UP_MARGIN = 200  # event ids below the subscription's latest id that are read again


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))


# --- ORM access, through selectors only ----------------------------------------------------
@database_sync_to_async
def _latest_event_id() -> int:
    return latest_event_id()


# The policy reads the user's permissions (and a job channel, the job) from the database.
@database_sync_to_async
def _may_subscribe(user: Any, channel: policy.Channel) -> bool:
    return policy.may_subscribe(user=user, channel=channel)


@database_sync_to_async
def _may_request_stats(user: Any) -> bool:
    return policy.may_request_stats(user)


@database_sync_to_async
def _replay(group: str, after: int, limit: int) -> list[dict[str, Any]]:
    return replay_events(group=group, after=after, limit=limit)


@database_sync_to_async
def _event_ids_of_groups(anchors: dict[str, int], limit: int) -> dict[str, list[int]]:
    return {group: replay_event_ids(group=group, after=after, limit=limit) for group, after in anchors.items()}


@database_sync_to_async
def _events(ids: list[int]) -> list[dict[str, Any]]:
    return with_batch_aggregates(events_by_ids(ids=ids))


class _SharedIdReads:
    """A process's catch-up reads of the log, gathered: one read per channel per ``SLOT``.

    A thousand sockets that subscribed in the same second catch up in the same second, and a
    read per socket, each its own hop to the database thread, held up every socket of the
    process (p99 of the steady benchmark 80-135 ms on PostgreSQL; 24 ms without the
    catch-ups). Requests are served at the next multiple of ``SLOT`` on the loop's clock
    (``_catch_up`` asks up to one slot early, so a catch-up is never later than its delay):
    all channels due in one slot are read in one hop, each once, after the smallest anchor
    asked for it; each socket keeps the ids past its own and reads rows only for those it
    has not seen.
    """

    SLOT = 0.5

    def __init__(self) -> None:
        self.anchors: dict[str, int] = {}
        self.ready: asyncio.Future[dict[str, list[int]]] | None = None

    async def ids_after(self, group: str, after: int, limit: int) -> list[int]:
        loop = asyncio.get_running_loop()
        if self.ready is None:
            self.ready = loop.create_future()
            next_slot = (loop.time() // self.SLOT + 1) * self.SLOT
            loop.call_at(next_slot, lambda: asyncio.ensure_future(self._read(limit)))
        anchors = self.anchors  # this slot's; the read swaps in a fresh one
        anchors[group] = min(anchors.get(group, after), after)
        found = await asyncio.shield(self.ready)
        ids = found.get(group, [])
        if len(ids) >= limit and after > anchors[group]:
            # A full page may stop short of this socket's ids: read from its own anchor.
            return (await _event_ids_of_groups({group: after}, limit))[group]
        return [event_id for event_id in ids if event_id > after]

    async def _read(self, limit: int) -> None:
        anchors, ready = self.anchors, self.ready
        self.anchors, self.ready = {}, None
        assert ready is not None
        try:
            ready.set_result(await _event_ids_of_groups(anchors, limit))
        except Exception as exc:
            ready.set_exception(exc)


_T = TypeVar("_T")
# One instance of each per-process helper class per event loop (tests run several loops).
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type, Any]] = weakref.WeakKeyDictionary()


def _loop_single(cls: type[_T]) -> _T:
    """The running loop's instance of ``cls``, made on first use."""
    instances = _per_loop.setdefault(asyncio.get_running_loop(), {})
    if cls not in instances:
        instances[cls] = cls()
    return cast(_T, instances[cls])


def _shared_id_reads() -> _SharedIdReads:
    return _loop_single(_SharedIdReads)


@database_sync_to_async
def _stats() -> dict[str, Any]:
    return stats_body()


class _Flusher:
    """Sends the frames that the hub queued on sockets, once per event-loop turn, for all of them.

    A sender task per socket cost a wake-up per socket per relay batch (an ``Event`` set, a
    future, a task step, a new wait): about a third of daphne's main thread under the
    overload benchmark (py-spy). Here the first socket that gets a frame in a turn schedules
    one task that drains every such socket in turn. The hub hands over everything the layer
    has already received before that task runs, so a socket that is behind conflates its
    progress in its outbox, not in the layer's queue. Daphne's ``send`` does not wait (it
    hands the frame to Twisted's buffer), so one socket does not hold up the others.
    """

    def __init__(self) -> None:
        self.ready: dict[JobsConsumer, None] = {}  # insertion-ordered, each socket once
        self.task: asyncio.Task[None] | None = None

    def add(self, consumer: JobsConsumer) -> None:
        self.ready[consumer] = None
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.ready:
                ready, self.ready = self.ready, {}
                for consumer in ready:
                    try:
                        await consumer._drain()
                    except Exception:  # one broken socket must not stop the others
                        logger.exception("websocket: sending queued frames failed")
        finally:
            self.task = None


def _flusher() -> _Flusher:
    return _loop_single(_Flusher)


# --- access, checked again while a socket is open -------------------------------------------
# One socket's answer: the user as its session / token / id authenticates it now (None: no
# longer), and the channels of its subscriptions that user may no longer receive.
_Verdict = tuple[Any, set[str]]


@database_sync_to_async
def _recheck(sockets: list[tuple[Identity, list[str]]]) -> list[_Verdict]:
    """One hop for every socket of the process: each identity read once, each channel asked once per
    identity, with the user fetched afresh (Django caches permissions on a user instance)."""
    users: dict[Identity, Any] = {}
    answers: dict[tuple[Identity, str], bool] = {}
    verdicts: list[_Verdict] = []
    for identity, channels in sockets:
        if identity not in users:
            fresh = user_of(identity)
            users[identity] = fresh if policy.signed_in(fresh) else None
        user = users[identity]
        if user is None:
            verdicts.append((None, set()))
            continue
        revoked = set()
        for name in channels:
            if (identity, name) not in answers:
                parsed = policy.parse_channel(name)
                answers[identity, name] = parsed is not None and policy.may_subscribe(user=user, channel=parsed)
            if not answers[identity, name]:
                revoked.add(name)
        verdicts.append((user, revoked))
    return verdicts


class _Reauth:
    """Checks every open socket of the process again each ``JOBADMIN_WS_REAUTH_INTERVAL``.

    A socket's user, permissions, session and token are read once when it connects; without
    this a revoked ``jobs.view_job``, a deactivated user, a logout or a deleted token never
    reached a socket already open. One database hop per interval for the whole process (each
    user, session or token once, however many sockets share it); a hop that fails (the
    database is away) changes nothing, and the next interval tries again.
    """

    def __init__(self) -> None:
        self.sockets: dict[JobsConsumer, None] = {}
        self.task: asyncio.Task[None] | None = None
        self.failing = False

    def add(self, consumer: JobsConsumer) -> None:
        self.sockets[consumer] = None
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    def discard(self, consumer: JobsConsumer) -> None:
        self.sockets.pop(consumer, None)

    async def _run(self) -> None:
        try:
            while self.sockets:
                await asyncio.sleep(float(settings.JOBADMIN_WS_REAUTH_INTERVAL))
                await self.check()
        finally:
            self.task = None

    async def check(self) -> None:
        sockets = [consumer for consumer in self.sockets if not consumer.closing]
        if not sockets:
            return
        try:
            verdicts = await _recheck([(s.identity, list(s.groups_by_channel)) for s in sockets])
        except Exception as exc:  # the database is away: keep what each socket has, try again
            if not self.failing:
                self.failing = True
                logger.warning("websocket: checking the access of open sockets failed (%r); keeping it", exc)
            return
        self.failing = False
        for consumer, (user, revoked) in zip(sockets, verdicts, strict=True):
            try:
                await consumer.access_changed(user, revoked)
            except Exception:  # one broken socket must not stop the others
                logger.exception("websocket: applying an access check failed")


def _reauth() -> _Reauth:
    return _loop_single(_Reauth)


def behind(outbox_length: int, queued_at: float | None) -> bool:
    """Whether a subscriber is behind (its queued progress of a job is replaced by the newer one):
    a long outbox, or a queued progress already ``STALE_AFTER`` old. Sockets and SSE streams alike."""
    return outbox_length >= CONFLATE_AT or (queued_at is not None and time.time() - queued_at >= STALE_AFTER)


def channel_group(channel: policy.Channel) -> str:
    """The hub group of a parsed channel (``job:<id>`` -> ``job.<id>``, ``all`` -> ``jobs.all``, ...)."""
    system = {"all": ALL_GROUP, "alerts": ALERTS_GROUP, "stats": STATS_GROUP}
    return system.get(channel.kind) or f"{channel.kind}.{channel.key}"


class _Entry:
    __slots__ = ("at", "event_id", "job", "kind", "text")

    def __init__(self, event_id: int, job: str | None, kind: str, text: str, at: float | None = None) -> None:
        self.event_id = event_id
        self.job = job
        self.kind = kind
        self.text = text
        self.at = at  # the time of the change (epoch seconds), if known


class JobsConsumer(AsyncWebsocketConsumer):
    # Sockets get their events from the process's hub, not from a layer channel of their own:
    # no per-socket layer channel (a Redis subscription and a receive task each) to keep.
    channel_layer_alias = "jobadmin-hub-only"
    user: Any
    groups_by_channel: dict[str, str]

    # --- lifecycle --------------------------------------------------------------------------
    def init_state(self, user: Any) -> None:
        self.user = user
        self.identity: Identity = ("user", None)
        self.groups_by_channel = {}
        self.outbox: deque[_Entry] = deque()
        self.pending_progress: dict[str, _Entry] = {}
        self.seen: OrderedDict[int, None] = OrderedDict()
        self.replaying = 0  # holds on live frames: a replay, the welcome (see ``_hold``)
        self.live = asyncio.Event()  # set while nothing is held
        self.live.set()
        self.flusher: _Flusher | None = None  # the process's, once connected
        self.tokens = BURST
        self.refilled = time.monotonic()
        self.refused = 0
        self.last_rate_error = 0.0
        self.closing = False
        self.counted = False  # in the hub's count of open sockets (and of its user's)
        self.catch_ups: set[asyncio.Task[Any]] = set()
        self.welcome_hold = False  # live events wait for the client's first message

    async def connect(self) -> None:
        self.init_state(self.scope.get("user"))
        self.flusher = _flusher()
        await self.accept()
        if not (self.user and self.user.is_authenticated):
            # Accept first so that the client sees the close code, not a bare 403.
            await self.close(code=messages.CLOSE_UNAUTHENTICATED)
            return
        self.identity = identity_of(self.scope)
        if not await self._take_socket_slot():
            return
        _reauth().add(self)
        own = f"user:{self.user.pk}"
        # ``welcome`` goes first: what the hub hands over from the join on waits in the
        # outbox (held like a replay) until it is out.
        with self._holding_live():
            await self._join(own, f"user.{self.user.pk}")
            latest = await _latest_event_id()
            await self._send(messages.welcome(user=self.user, latest_event_id=latest, channels=[own]))
        # A client that resumes subscribes with ``since`` right after the welcome. Its user
        # channel is live already, and an event of its job sent live now would come before
        # the replay of the older ones it missed (a client that keeps only newer ids then
        # drops them): live events wait until its first message is handled, or briefly.
        self._hold()
        self.welcome_hold = True
        asyncio.get_running_loop().call_later(HOLD_AFTER_WELCOME, self._end_welcome_hold)

    async def _take_socket_slot(self) -> bool:
        """Count this socket for its user; over ``JOBADMIN_WS_MAX_SOCKETS_PER_USER`` (this process's
        and, with Redis, the others'), refuse it: ``error`` ``too-many-sockets``, then close 4429.
        Counted per user, not per address: an address can be forged behind a proxy, a login cannot."""
        hub = get_hub()
        hub.socket_opened(self.user.pk)  # before any await: two connects at once both count
        self.counted = True
        cap = int(settings.JOBADMIN_WS_MAX_SOCKETS_PER_USER)
        if hub.user_sockets.get(self.user.pk, 0) <= cap and await hub.user_sockets_total(self.user.pk) <= cap:
            return True
        self._uncount()
        self.closing = True
        await self._error(messages.TOO_MANY_SOCKETS, f"a user may have at most {cap} websockets open")
        await self.close(code=messages.CLOSE_TOO_MANY_SOCKETS)
        return False

    def _uncount(self) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            get_hub().socket_closed(self.user.pk)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in list(getattr(self, "catch_ups", ())):
            task.cancel()
        hub = get_hub()
        _reauth().discard(self)
        self._uncount()
        for group in list(getattr(self, "groups_by_channel", {}).values()):
            await hub.leave(group, self)

    # --- from the hub (synchronous, must not block) ------------------------------------------
    def deliver(self, event_id: int, job: str | None, kind: str, text: str, at: float | None = None) -> None:
        if self.closing or event_id in self.seen:
            return
        if job is not None:
            queued = self.pending_progress.get(job)
            if kind == EventKind.PROGRESS and queued is not None and self._behind(queued):
                # Behind: the newest progress of a job replaces its queued one in place. The
                # replaced one counts as sent: a catch-up read must not bring it back, late.
                self._mark_seen(queued.event_id)
                queued.event_id, queued.text, queued.at = event_id, text, at
                return
            self.pending_progress.pop(job, None)
        entry = _Entry(event_id, job, kind, text, at)
        if job is not None and kind == EventKind.PROGRESS:
            self.pending_progress[job] = entry
        self.outbox.append(entry)
        if len(self.outbox) > OUTBOX_MAX:
            self.closing = True
            asyncio.ensure_future(self.close(code=messages.CLOSE_TOO_SLOW))
            return
        if not self.replaying:
            self._flush_soon()

    def _behind(self, queued: _Entry) -> bool:
        """Whether this socket is behind: a long outbox, or a queued progress already stale."""
        return behind(len(self.outbox), queued.at)

    def deliver_stats(self, text: str) -> None:
        if not self.closing:
            self.outbox.append(_Entry(0, None, "stats", text))
            if not self.replaying:
                self._flush_soon()

    def _end_welcome_hold(self) -> None:
        if self.welcome_hold:
            self.welcome_hold = False
            self._release()

    def _hold(self) -> None:
        self.replaying += 1
        self.live.clear()

    def _release(self) -> None:
        self.replaying -= 1
        if not self.replaying:
            self.live.set()
            if self.outbox:
                self._flush_soon()

    @contextmanager
    def _holding_live(self) -> Iterator[None]:
        """Live events wait in the outbox while the block sends (the welcome, a replay)."""
        self._hold()
        try:
            yield
        finally:
            self._release()

    def _flush_soon(self) -> None:
        if self.flusher is not None:  # None only before connect (unit tests of the outbox)
            self.flusher.add(self)

    def _mark_seen(self, event_id: int) -> bool:
        """False if the event was already sent on this socket."""
        if event_id in self.seen:
            return False
        self.seen[event_id] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        return True

    async def _drain(self) -> None:
        """Send the outbox (called by the process's ``_Flusher``; held back during a replay)."""
        while self.outbox and not self.replaying and not self.closing:
            entry = self.outbox.popleft()
            if entry.job is not None and self.pending_progress.get(entry.job) is entry:
                del self.pending_progress[entry.job]
            if entry.event_id and not self._mark_seen(entry.event_id):
                continue
            # What ``send(text_data=...)`` sends, without its two coroutine layers per frame.
            await self.base_send({"type": "websocket.send", "text": entry.text})

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=_encode(message))

    async def _error(self, code: str, text: str, **extra: Any) -> None:
        await self._send(messages.error(code=code, message=text, **extra))

    # --- from the client --------------------------------------------------------------------
    def _allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.refilled) * RATE)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self._receive(text_data, bytes_data)
        finally:
            self._end_welcome_hold()

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        if self.closing:
            return
        if not self._allow():
            self.refused += 1
            if self.refused >= FLOOD_LIMIT:
                self.closing = True
                await self.close(code=messages.CLOSE_FLOOD)
                return
            now = time.monotonic()
            if now - self.last_rate_error >= 1.0:  # one error a second, not one per frame
                self.last_rate_error = now
                await self._error(messages.RATE_LIMITED, f"more than {RATE:g} messages per second")
            return
        raw = text_data if text_data is not None else bytes_data or b""
        if len(raw) > MAX_FRAME:
            await self._error(messages.TOO_LARGE, f"frames are limited to {MAX_FRAME} bytes")
            return
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            await self._error(messages.BAD_JSON, "the frame is not valid JSON")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._error(messages.BAD_MESSAGE, "a message is a JSON object with a string 'type'")
            return
        kind = data["type"]
        handler = self.CLIENT_MESSAGES.get(kind)
        if handler is None:
            await self._error(messages.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}")
        else:
            await getattr(self, handler)(data)

    # Every message a client may send, and its handler (tests/test_access_matrix.py walks these).
    CLIENT_MESSAGES = {
        "ping": "_ping",
        "subscribe": "_subscribe",
        "unsubscribe": "_unsubscribe",
        "request-stats": "_request_stats",
    }

    async def _ping(self, data: dict[str, Any]) -> None:
        await self._send(messages.pong(ts=data.get("ts")))

    async def _request_stats(self, data: dict[str, Any]) -> None:
        # ``self.user`` is the one the last access check read afresh (``access_changed``).
        if await _may_request_stats(self.user):
            await self._send(messages.job_stats(stats=await _stats()))
        else:
            await self._error(messages.FORBIDDEN, policy.missing(policy.VIEW_JOBS, "request-stats"))

    # --- subscriptions ----------------------------------------------------------------------
    async def _group_for(self, parsed: policy.Channel | None) -> tuple[str | None, str | None]:
        """The layer group of a channel, or ``(None, error code)``; who may is ``policy.may_subscribe``."""
        if parsed is None:
            return None, messages.UNKNOWN_CHANNEL
        if not await _may_subscribe(self.user, parsed):
            return None, messages.FORBIDDEN
        return channel_group(parsed), None

    async def _join(self, channel: str, group: str) -> None:
        self.groups_by_channel[channel] = group
        await get_hub().join(group, self)

    async def _subscribe(self, data: dict[str, Any]) -> None:
        asked = data.get("channel")
        since = data.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            await self._error(messages.BAD_MESSAGE, "'since' must be a non-negative event id", channel=str(asked)[:80])
            return
        # One spelling per channel: ``user:01`` is ``user:1``, an upper-case job id the lower-case
        # one; the subscription, its group and the ``subscribed`` reply use the canonical name.
        parsed = policy.parse_channel(asked)
        channel = parsed.name if parsed is not None else asked
        cap = int(settings.JOBADMIN_WS_MAX_SUBSCRIPTIONS)
        if parsed is not None and channel not in self.groups_by_channel and len(self.groups_by_channel) >= cap:
            text = f"a socket may hold at most {cap} subscriptions; unsubscribe from one first"
            await self._error(messages.TOO_MANY_SUBSCRIPTIONS, text, channel=str(channel)[:80])
            return
        replayed = 0
        # Live events wait from here, before the policy is asked (a database hop): one of this
        # channel's events arriving meanwhile on another of the socket's channels (its user's)
        # must not overtake the replay of older ones; they queue up (bounded) until it is out.
        with self._holding_live():
            group, problem = await self._group_for(parsed)
            if group is None:
                text = policy.FORBIDDEN_CHANNEL if problem == messages.FORBIDDEN else "no such channel"
                await self._error(problem or messages.UNKNOWN_CHANNEL, text, channel=str(channel)[:80])
                return
            assert isinstance(channel, str)
            # Join before reading the log: whatever commits after the read arrives live, and
            # whatever both paths carry is sent once (``seen``). No gap, no duplicate.
            await self._join(channel, group)
            latest = await _latest_event_id()
            if since is not None and group != STATS_GROUP:
                replayed = await self._send_replay(channel, group, since)
        await self._send(messages.subscribed(channel=channel, since=since, replayed=replayed, latest_event_id=latest))
        if group != STATS_GROUP:
            anchor = latest if since is None else max(since, latest - CATCH_UP_MARGIN)
            task = asyncio.create_task(self._catch_up(channel, group, anchor))
            self.catch_ups.add(task)
            task.add_done_callback(self.catch_ups.discard)

    async def _catch_up(self, channel: str, group: str, anchor: int) -> None:
        """Read the log again after the subscription settled; events already sent are skipped."""
        # The shared read serves at the next slot boundary: ask up to one slot early, so
        # that each catch-up runs between ``delay - SLOT`` and ``delay``, never later.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for delay in CATCH_UP_AFTER:
            await asyncio.sleep(max(0.0, start + delay - _SharedIdReads.SLOT - loop.time()))
            subscribed = lambda: self.groups_by_channel.get(channel) == group  # noqa: E731 - this subscription
            if not await self._read_again(group, anchor, still=subscribed):
                return

    async def _read_again(self, group: str, anchor: int, still: Callable[[], bool] | None = None) -> bool:
        """Send what the log has for ``group`` after ``anchor`` and this socket has not had.

        A read that fails (the database is away) is retried with back-off, so what it would
        bring is delivered once the database is back. False, without reading, once the socket
        closed or ``still()`` (by default: the socket still watches ``group``) is false.
        """
        backoff = CATCH_UP_RETRY[0]
        failed = False
        after, read = anchor, 0
        # Page by page up to the end of the log: what was missed can be more than a page (a
        # Redis restart at hundreds of events per second), and a first page alone left the
        # rest undelivered. As far as a replay goes (REPLAY_MAX); past it the client is told.
        while read < REPLAY_MAX:
            if self.closing or not (still() if still else group in self.groups_by_channel.values()):
                return False
            try:
                ids = await _shared_id_reads().ids_after(group, after, REPLAY_PAGE)
                wanted = [event_id for event_id in ids if event_id not in self.seen]
                rows = await _events(wanted) if wanted else []
            except Exception as exc:
                if not failed:  # once per outage and read, not once per retry
                    failed = True
                    logger.warning("websocket: a catch-up read of %s failed (%r); retrying", group, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CATCH_UP_RETRY[1])
                continue
            for row in rows:
                # Not in the middle of a replay (of another channel of this socket): an event
                # sent now could be newer than what the replay has still to send.
                await self.live.wait()
                message = event_message(row)
                if message is not None and self._mark_seen(row["id"]):
                    await self._send(message)
            if len(ids) < REPLAY_PAGE:
                return True
            after, read = ids[-1], read + len(ids)
        channel = next((name for name, member in self.groups_by_channel.items() if member == group), group)
        await self._truncated("a catch-up", channel, after)
        return True

    async def _truncated(self, what: str, channel: str, after: int) -> None:
        """A replay or catch-up stopped at REPLAY_MAX: the client resubscribes from ``after``."""
        await self._error(
            messages.REPLAY_TRUNCATED,
            f"{what} stopped after {REPLAY_MAX} events; subscribe again with since={after}",
            channel=channel,
            last_event_id=after,
        )

    def catch_up_after(self, anchor: int) -> None:
        """From the hub, which missed relay batches: read every channel's log after ``anchor`` again."""
        if self.closing:
            return
        for group in set(self.groups_by_channel.values()) - {STATS_GROUP}:
            task = asyncio.ensure_future(self._read_again(group, anchor))
            self.catch_ups.add(task)
            task.add_done_callback(self.catch_ups.discard)

    async def _send_replay(self, channel: str, group: str, since: int) -> int:
        sent = 0
        after = since
        total = 0
        while total < REPLAY_MAX:
            rows = await _replay(group, after, REPLAY_PAGE)
            for row in rows:
                message = event_message(row)
                if message is not None and self._mark_seen(row["id"]):
                    await self._send(message)
                    sent += 1
            total += len(rows)
            if len(rows) < REPLAY_PAGE:
                return sent
            after = rows[-1]["id"]
        await self._truncated("replay", channel, after)
        return sent

    async def _unsubscribe(self, data: dict[str, Any]) -> None:
        parsed = policy.parse_channel(data.get("channel"))
        channel = parsed.name if parsed is not None else data.get("channel")
        group = self.groups_by_channel.pop(parsed.name, None) if parsed is not None else None
        if group is None:
            await self._error(messages.UNKNOWN_CHANNEL, "not subscribed to this channel", channel=str(channel)[:80])
            return
        if group not in self.groups_by_channel.values():
            await get_hub().leave(group, self)
        await self._send(messages.unsubscribed(channel=str(channel)))

    # --- access, checked again (``_Reauth``) ---------------------------------------------------
    async def access_changed(self, user: Any, revoked: set[str]) -> None:
        """Apply a fresh access check: close 4401 once the user, session or token no longer
        authenticates; end each subscription the user may no longer see (``unsubscribed`` with
        ``reason`` ``forbidden``); later questions (``request-stats``, ``subscribe``) ask about
        the fresh user, whose permissions are not cached from before."""
        if self.closing:
            return
        if user is None:
            self.closing = True
            _reauth().discard(self)
            await self.close(code=messages.CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        for channel in sorted(revoked):
            group = self.groups_by_channel.pop(channel, None)
            if group is None:
                continue  # unsubscribed meanwhile
            if group not in self.groups_by_channel.values():
                await get_hub().leave(group, self)
            await self._send(
                messages.unsubscribed(
                    channel=channel, reason=messages.FORBIDDEN, message="access to this channel was withdrawn"
                )
            )
