"""From the event log to the sockets: the relay (log -> channel layer) and the hub (layer -> sockets).

**Relay.** One per deployment: inside the web process on the embedded default (started
lazily on the first websocket), in ``manage.py monitor`` when ``REDIS_URL`` is set. It
reads new ``JobEvent`` rows on the primary key and publishes each one once, with the
groups it belongs to (``job.<uuid>``, ``user.<owner>``, ``jobs.all``; alerts
``jobs.alerts``), in one layer message per read (up to ``batch`` events) to the
single group ``jobs.events`` that every web process's hub listens to. One message per
read, not one per event and group: a ``group_send`` costs an event-loop round trip on the
in-process layer and a Redis round trip on channels-redis, and at three groups per event
that capped the relay near 500 events/s under load (measured: 1-3 ms per event). It also
computes ``job-stats`` once per ``JOB_STATS_INTERVAL`` and publishes it the same way.

When it reads: on PostgreSQL, when a notification says events were committed (a trigger,
``live`` migration 0002, NOTIFYs ``jobadmin_events`` at each commit that inserted events;
the relay LISTENs on a connection of its own, see ``Listener``), and at least every
``JOBADMIN_RELAY_SAFETY_POLL`` seconds in case one was missed; elsewhere (SQLite,
``JOBADMIN_RELAY_LISTEN=false``, or while the listening connection is down) every
``JOBADMIN_RELAY_POLL`` seconds. An idle relay that polled every 10 ms cost about 15 % of a
core, its database session a few more (docs/benchmarks.md, "The relay's wake-up").

The outbox trap: on PostgreSQL ids are taken at INSERT and become visible at COMMIT, so
id 11 can become visible after id 12 was read. The relay remembers every id it skipped
below the highest one seen (a *gap*) and re-reads the gaps on every poll for
``JOBADMIN_RELAY_GAP_GRACE`` seconds; a gap still empty after that was a rolled-back
insert. When the database is unreachable the cursor simply does not move; when the
layer is unreachable the unpublished events stay in hand (and nothing new is read) until
it is back, so nothing is lost and nothing is sent twice.

The cursor and the gaps are kept in the database (``live.models.RelayState``) once what
was read is published (at most every ``STATE_SAVE_EVERY``): a relay that starts continues
where the last one stopped, so events committed while no relay ran (a restart, a deploy,
a monitor failover), late commits below the cursor included, are published then. The
first watermark is written by ``migrate`` (live migration 0003, at the latest event then),
so a fresh install's first events are published too; only a relay that finds no row at
all (deleted by hand) starts at the latest event. In the monitor the relay publishes and
saves only while the monitor's lease holds (``fence``).

**Hub.** One per web process (per event loop). It is the only member of ``jobs.events``
in its process (one layer subscription, whatever its sockets watch); for each event it
hands the already encoded text to each local socket subscribed to any of the event's
groups. This turns the per-subscriber cost of ``group_send`` (one layer message per
member) into one layer message per read per process plus a local append per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection
from django.utils import timezone

from jobs.models import Batch, EventKind, JobEvent
from jobs.services import batch_summaries
from live import messages
from live.models import RelayState
from live.transport import tune_gc
from monitoring.metrics import EVENT_LAG_CACHE_KEY, WS_CONNECTIONS_CACHE_KEY

logger = logging.getLogger(__name__)

EVENTS_TYPE = "relay.events"
STATS_TYPE = "relay.stats"
EVENTS_GROUP = "jobs.events"  # the one layer group: every hub listens, the relay publishes
STATS_GROUP = "jobs.stats"
ALL_GROUP = "jobs.all"
ALERTS_GROUP = "jobs.alerts"
HUB_CAPACITY = 100_000
# An idle relay repeats the number of its last batch this often, so that a hub that lost the
# last batches (its layer connection was away: Redis restarted) finds out without new events.
TICK_EVERY = 1.0
# Event ids below the highest a hub handed out that it reads again after missing a batch
# (ids commit out of order on PostgreSQL).
MISSED_MARGIN = 200

# Live gauges in the cache (read by monitoring.metrics and /metrics). On the embedded default
# the cache is a DatabaseCache, so every write is a database write: at most one per interval.
LAG_TTL = 60.0  # a relay that died stops reporting: its lag disappears instead of freezing
LAG_IDLE_REFRESH = 20.0  # an idle relay re-states its 0 this often
WS_TTL = 30.0  # a process's socket count lives this long unless refreshed
WS_REFRESH = 10.0  # a process with open sockets refreshes its count this often
WS_REGISTRY_KEY = f"{WS_CONNECTIONS_CACHE_KEY}:processes"


def gauge_interval() -> float:
    """The shortest time between two writes of one gauge (``JOBADMIN_GAUGE_INTERVAL``, 1 s)."""
    return float(settings.JOBADMIN_GAUGE_INTERVAL)


# --- selectors (sync; called through database_sync_to_async or the relay's thread) -------
_EVENT_FIELDS = ("id", "kind", "job_id", "owner_id", "payload", "created_at")


def latest_event_id() -> int:
    row = JobEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return int(row or 0)


def events_after(*, after: int, limit: int) -> list[dict[str, Any]]:
    if connection.vendor == "sqlite":
        return _sqlite_events("id > %s", [after], limit)
    return list(JobEvent.objects.filter(id__gt=after).order_by("id").values(*_EVENT_FIELDS)[:limit])


def events_by_ids(*, ids: Iterable[int]) -> list[dict[str, Any]]:
    wanted = list(ids)
    if connection.vendor == "sqlite":
        # In chunks: SQLite limits the parameters of one statement.
        chunks = [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        return [row for chunk in chunks for row in _sqlite_events(f"id IN ({', '.join(['%s'] * len(chunk))})", chunk)]
    return list(JobEvent.objects.filter(id__in=wanted).order_by("id").values(*_EVENT_FIELDS))


def _sqlite_events(where: str, params: list[Any], limit: int | None = None) -> list[dict[str, Any]]:
    """The relay's read on SQLite as ONE result row (a JSON array), the same rows as ``values()``.

    Python's sqlite3 releases the GIL around each row it steps. The relay reads in a thread
    of the web process (embedded default), whose event loop is busy with the sockets under
    load: that thread then waited for the GIL once per row, and a read of 200-500 events
    took 150-700 ms instead of 10-20 ms (measured), which was most of the commit-to-arrival
    latency under overload. One aggregated row is one wait.
    """
    sql = (
        "SELECT json_group_array(json_array(id, kind, job_id, owner_id, json(payload), created_at)) "
        f"FROM (SELECT * FROM {JobEvent._meta.db_table} WHERE {where} ORDER BY id"
        f"{' LIMIT %s' if limit is not None else ''})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit] if limit is not None else params)
        (text,) = cursor.fetchone()
    zone = connection.timezone
    rows = [
        {
            "id": event_id,
            "kind": kind,
            "job_id": uuid.UUID(job_id) if job_id else None,
            "owner_id": owner_id,
            "payload": payload,
            "created_at": timezone.make_aware(datetime.fromisoformat(created), zone) if created else None,
        }
        for event_id, kind, job_id, owner_id, payload, created in json.loads(text or "[]")
    ]
    rows.sort(key=lambda row: row["id"])
    return rows


def _batch_of(row: dict[str, Any]) -> int | None:
    """The batch of the job an event row reports (its snapshot says), or None."""
    batch = ((row["payload"] or {}).get("job") or {}).get("batch")
    return batch if isinstance(batch, int) else None


AGGREGATE = "batch_aggregate"  # the key ``with_batch_aggregates`` adds to a member's event row
# The least time between two reads that computed batch aggregates. A read per member event
# computed one aggregate (a GROUP BY over the batch's members, 5-8 ms for 2,000-10,000 on
# PostgreSQL) per event under a draining batch: 1.2-2.5 ms of relay CPU per member event on
# SQLite (docs/benchmarks.md, "Batches"). Only while batches are busy: the first event after
# a quiet spell is read at once, and every member event still carries its read's aggregate.
AGGREGATE_SPACING = 0.1


def with_batch_aggregates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows``, each member's with its batch's aggregate under ``AGGREGATE`` (see ``message_for``).

    Computed once per read, whatever the number of member events in it: two queries (the
    batch rows, and one ``GROUP BY batch, status`` over their members), never one per event. A
    failure costs the aggregate, never the events: they go out without it, the next read's
    carry it again.
    """
    wanted = {batch for batch in map(_batch_of, rows) if batch is not None}
    if not wanted:
        return rows
    try:
        batches = list(Batch.objects.filter(pk__in=wanted).only("id", "created_at", "finished_at"))
        summaries = batch_summaries(batches)
    except Exception as exc:
        logger.warning("relay: the batches' aggregate failed: %r", exc)
        return rows
    aggregates = {
        batch.pk: messages.batch_aggregate(
            batch_id=batch.pk, summary=summaries[batch.pk], finished_at=batch.finished_at
        )
        for batch in batches
    }
    for row in rows:
        if (batch := _batch_of(row)) in aggregates:
            row[AGGREGATE] = aggregates[batch]
    return rows


def _group_events(group: str, after: int) -> Any:
    """The events of ``group`` after ``after`` (a queryset), or None for a group without events."""
    queryset = JobEvent.objects.filter(id__gt=after)
    if group.startswith("job."):
        return queryset.filter(job_id=group[4:])
    if group.startswith("user."):
        return queryset.filter(owner_id=int(group[5:]), job__isnull=False)
    if group.startswith("batch."):
        return queryset.filter(job__batch_id=int(group[6:]))
    if group == ALL_GROUP:
        return queryset.filter(job__isnull=False)
    if group == ALERTS_GROUP:
        return queryset.filter(kind=EventKind.ALERT)
    return None


def replay_events(*, group: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The events a subscriber of ``group`` missed after ``after``, oldest first."""
    queryset = _group_events(group, after)
    return (
        [] if queryset is None else with_batch_aggregates(list(queryset.order_by("id").values(*_EVENT_FIELDS)[:limit]))
    )


def replay_event_ids(*, group: str, after: int, limit: int) -> list[int]:
    """Only the ids of ``replay_events``: a catch-up read that usually finds nothing missing
    should not decode payloads (1,000 sockets' catch-ups did, holding the GIL for seconds)."""
    queryset = _group_events(group, after)
    return [] if queryset is None else list(queryset.order_by("id").values_list("id", flat=True)[:limit])


def stats_body() -> dict[str, Any]:
    """The body of ``GET /api/stats/`` (default range), computed by the monitoring app."""
    from monitoring.stats import stats_summary

    return dict(stats_summary())


_gauge_executor: ThreadPoolExecutor | None = None


async def in_gauge_thread(fn: Callable[[], Any]) -> Any:
    """Run a gauge write in its own thread: never on the event path (the relay's database
    thread, the consumers' sync thread), where a slow or unreachable cache would delay events."""
    global _gauge_executor
    if _gauge_executor is None:
        _gauge_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-gauges")

    def call() -> Any:
        try:
            return fn()
        finally:
            connection.close()  # the DatabaseCache's connection: a test database must be droppable

    return await asyncio.get_running_loop().run_in_executor(_gauge_executor, call)


def store_event_lag(value: float) -> None:
    try:
        cache.set(EVENT_LAG_CACHE_KEY, round(value, 3), timeout=LAG_TTL)
    except Exception as exc:  # a cache that is away must not stop the relay
        logger.warning("relay: storing the event lag failed: %r", exc)


def ws_process_key(token: str) -> str:
    return f"{WS_CONNECTIONS_CACHE_KEY}:{token}"


def ws_connections_store(*, token: str, count: int) -> int:
    """Store one process's open sockets and the total over live processes; returns the total.

    Each process writes its count under its own key with a TTL (a process that dies stops
    counting after ``WS_TTL``), lists itself in a small registry (no key scan: works on the
    database and the Redis cache alike), and writes the sum of the live counts under
    ``WS_CONNECTIONS_CACHE_KEY``, the key the readers use. Two processes updating the
    registry at once may drop one entry; its owner puts it back on its next refresh.
    """
    now = time.time()
    registry = {t: expiry for t, expiry in dict(cache.get(WS_REGISTRY_KEY) or {}).items() if expiry > now}
    if count > 0:
        cache.set(ws_process_key(token), count, timeout=WS_TTL)
        registry[token] = now + WS_TTL
    else:
        cache.delete(ws_process_key(token))
        registry.pop(token, None)
    counts = cache.get_many([ws_process_key(t) for t in registry]) if registry else {}
    total = sum(max(int(value), 0) for value in counts.values())
    cache.set_many({WS_REGISTRY_KEY: registry, WS_CONNECTIONS_CACHE_KEY: total}, timeout=WS_TTL)
    return total


def ws_user_key(user_pk: Any, token: str) -> str:
    return f"{WS_CONNECTIONS_CACHE_KEY}:user:{user_pk}:{token}"


def ws_user_sockets_elsewhere(*, user_pk: Any, token: str) -> int:
    """The sockets ``user_pk`` has open in the other live web processes (their keys in the cache).

    Each process writes its own count per user (``ws_user_sockets_store``) under a key with a
    TTL, refreshed while it has sockets: a process that dies (SIGKILL) stops counting after
    ``WS_TTL``. The live processes are the registry of ``ws_connections_store``.
    """
    now = time.time()
    others = [t for t, expiry in dict(cache.get(WS_REGISTRY_KEY) or {}).items() if expiry > now and t != token]
    if not others:
        return 0
    counts = cache.get_many([ws_user_key(user_pk, other) for other in others])
    return sum(max(int(value), 0) for value in counts.values())


def ws_user_sockets_store(*, token: str, counts: dict[Any, int]) -> None:
    """Write this process's sockets per user (0: delete the key)."""
    alive = {ws_user_key(pk, token): count for pk, count in counts.items() if count > 0}
    if alive:
        cache.set_many(alive, timeout=WS_TTL)
    gone = [ws_user_key(pk, token) for pk, count in counts.items() if count <= 0]
    if gone:
        cache.delete_many(gone)


def ws_sockets_shared() -> bool:
    """Socket counts per user are shared between web processes through the cache with Redis;
    on the embedded default there is one web process, and its own count is the count."""
    return bool(settings.REDIS_URL)


# --- routing -------------------------------------------------------------------------------
def groups_for(row: dict[str, Any]) -> list[str]:
    if row["kind"] == EventKind.ALERT:
        return [ALERTS_GROUP]
    if row["job_id"] is None:
        return []  # queue events: no websocket message type carries them
    groups = [f"job.{row['job_id']}", ALL_GROUP]
    if row["owner_id"] is not None:
        groups.append(f"user.{row['owner_id']}")
    # A batch's members also reach its group (the batch page follows them there).
    if (batch := _batch_of(row)) is not None:
        groups.append(f"batch.{batch}")
    return groups


def message_for(row: dict[str, Any]) -> dict[str, Any] | None:
    """The websocket message an event row becomes (``None`` for events no client sees)."""
    payload = row["payload"] or {}
    created = row["created_at"]
    created_at = created.isoformat() if hasattr(created, "isoformat") else created
    if row["kind"] == EventKind.ALERT:
        return messages.job_alert(event_id=row["id"], alert=payload.get("alert") or {})
    if row["job_id"] is None or "job" not in payload:
        return None
    return messages.job_update(
        event_id=row["id"], kind=row["kind"], job=payload["job"], created_at=created_at, batch=row.get(AGGREGATE)
    )


def layer_event(row: dict[str, Any]) -> dict[str, Any] | None:
    """One event as it travels in a relay batch (see ``Hub.dispatch``)."""
    message = message_for(row)
    if message is None:
        return None
    created = row["created_at"]
    return {
        "id": row["id"],
        # The time of the change (epoch seconds): a socket that is behind by more than
        # ``consumers.STALE_AFTER`` conflates progress.
        "at": created.timestamp() if isinstance(created, datetime) else None,
        "kind": row["kind"],
        "job": str(row["job_id"]) if row["job_id"] else None,
        "groups": groups_for(row),
        # The encoded text, so every process and socket reuses one serialisation.
        "text": json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":")),
    }


# --- the relay -------------------------------------------------------------------------------
MAX_GAPS = 1000  # ids below a new highest id that are watched for a late commit
GAP_YOUNG = 1.0  # seconds during which a gap is re-read on every poll
GAP_SWEEP = 0.5  # seconds between re-reads of the older gaps (most of them rolled back)


class GapTracker:
    """The cursor over the event log, with the ids below it that were not visible yet."""

    def __init__(self, *, cursor: int, grace: float) -> None:
        self.cursor = cursor
        self.grace = grace
        self.gaps: dict[int, float] = {}  # id -> monotonic time after which it is given up
        self.next_sweep = 0.0

    def due(self, *, now: float) -> list[int]:
        """The gaps to re-read now: young ones on every poll (a late commit is usually a few
        ms late), all of them every ``GAP_SWEEP`` seconds. Re-reading 1,000 gaps on every
        10 ms poll cost the relay half a core on PostgreSQL."""
        if now >= self.next_sweep:
            self.next_sweep = now + GAP_SWEEP
            return list(self.gaps)
        born_after = now - GAP_YOUNG + self.grace  # as a deadline
        return [event_id for event_id, deadline in self.gaps.items() if deadline > born_after]

    def absorb(self, ids: Iterable[int], *, now: float) -> list[int]:
        """Take the ids just read; returns those not seen before (to publish), in order."""
        fresh = []
        for event_id in sorted(set(ids)):
            if event_id in self.gaps:
                del self.gaps[event_id]
                fresh.append(event_id)
            elif event_id > self.cursor:
                # A bounded number of gaps (ids in flight are at most a few per concurrent
                # writer): a huge jump (ids burnt by a bulk rollback, or a log emptied by
                # retention before the relay started) is not worth re-reading on every poll
                # for the grace period (10,000 ids cost 130 ms a read on PostgreSQL).
                for missing in range(max(self.cursor + 1, event_id - MAX_GAPS), event_id):
                    self.gaps[missing] = now + self.grace
                self.cursor = event_id
                fresh.append(event_id)
        return fresh

    def expire(self, *, now: float) -> None:
        for event_id in [i for i, deadline in self.gaps.items() if deadline <= now]:
            del self.gaps[event_id]


STATE_NAME = "default"  # one relay per deployment
# The longest the saved watermark trails what was published: a relay that dies publishes
# at most this much again after a restart (hubs and clients drop an event_id they have).
STATE_SAVE_EVERY = 0.5


def load_tracker(*, grace: float, now: float) -> GapTracker | None:
    """The tracker where the last relay left it (its gaps watched for ``grace`` again), or None."""
    state = RelayState.objects.filter(name=STATE_NAME).first()
    if state is None:
        return None
    tracker = GapTracker(cursor=state.cursor, grace=grace)
    tracker.gaps = {int(event_id): now + grace for event_id in state.gaps}
    return tracker


def save_tracker(tracker: GapTracker) -> None:
    values = {"cursor": tracker.cursor, "gaps": sorted(tracker.gaps), "updated_at": timezone.now()}
    if not RelayState.objects.filter(name=STATE_NAME).update(**values):
        RelayState.objects.update_or_create(name=STATE_NAME, defaults=values)


class LeaseLost(Exception):
    """The monitor is no longer sure it leads: the relay must stop publishing."""


class Layer(Protocol):
    async def group_send(self, group: str, message: dict[str, Any]) -> None: ...


NOTIFY_CHANNEL = "jobadmin_events"  # what the trigger of live migration 0002 notifies
# The listening relay reads at most once per this many seconds: under load one read takes
# what committed meanwhile. A read per notification cost the monitor 38-43 % of a core at
# 500 events/s against 28 % polling; 10 ms between reads cost 4-6 ms of latency at 100
# events/s; 5 ms matches the poll's CPU under load with lower latency (docs/benchmarks.md).
READ_SPACING = 0.005


def listen_available() -> bool:
    return bool(settings.JOBADMIN_RELAY_LISTEN) and connection.vendor == "postgresql"


class Listener:
    """A PostgreSQL connection of its own that LISTENs for commits of events and sets ``wake``.

    It reconnects after an error with back-off; each time it listens again it sets ``wake``
    once, for what was committed while it did not listen. ``listening`` says whether the
    relay may rely on it (else it polls).
    """

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self.listening = False

    @staticmethod
    def _params() -> dict[str, Any]:
        params = dict(connection.get_connection_params())
        for sync_only in ("cursor_factory", "context"):  # Django's, for its own sync connections
            params.pop(sync_only, None)
        return params

    async def run(self) -> None:
        import psycopg

        backoff = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**self._params(), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening = True
                    self.wake.set()
                    backoff = 0.5
                    async for _ in conn.notifies():
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: poll meanwhile, listen again later
                logger.warning("relay: listening for events failed: %r; polling meanwhile", exc)
            finally:
                self.listening = False
                self.wake.set()  # the relay polls until it listens again
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


class EventRelay:
    def __init__(
        self,
        *,
        layer: Any = None,
        poll: float | None = None,
        grace: float | None = None,
        stats_wanted: Callable[[], bool] | None = None,
        fence: Callable[[], bool] | None = None,
        listen: bool | None = None,
    ) -> None:
        self.layer = layer or get_channel_layer()
        # The monitor's lease: a relay that is no longer sure it runs alone publishes nothing.
        self.fence = fence or (lambda: True)
        self.poll = poll if poll is not None else float(settings.JOBADMIN_RELAY_POLL)
        self.grace = grace if grace is not None else float(settings.JOBADMIN_RELAY_GAP_GRACE)
        self.listen = listen_available() if listen is None else listen
        self.safety_poll = float(settings.JOBADMIN_RELAY_SAFETY_POLL)
        self.wake = asyncio.Event()  # set by the listener (and by stop): read the log now
        self.listener: Listener | None = None
        self.more_waiting = False  # the last read was a full batch: read again without waiting
        self._read_at = 0.0  # monotonic time of the last read (the listening relay spaces them)
        self._aggregates_due = 0.0  # no read before this (monotonic): see AGGREGATE_SPACING
        self.stats_interval = float(settings.JOB_STATS_INTERVAL)
        self.batch = 500
        self.tracker: GapTracker | None = None
        self._saved_state: tuple[int, tuple[int, ...]] | None = None
        self._next_save = 0.0
        # Read but not yet published, oldest first.
        self.in_hand: list[dict[str, Any]] = []
        self.published = 0
        # Every batch carries this relay's token and its number: a hub that sees a number
        # skipped reads the log again (``Hub.dispatch``).
        self.token = uuid.uuid4().hex[:12]
        self.seq = 0
        self._sent_at = 0.0
        self._executor: ThreadPoolExecutor | None = None  # one thread: one database connection
        self._next_stats = 0.0
        # Stats are slow (many aggregate queries): their own thread and connection, off the event path.
        self._stats_executor: ThreadPoolExecutor | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self.stats_wanted = stats_wanted or (lambda: True)
        self.stats_computed = 0
        # Event lag: the oldest ``created_at`` in hand, the worst lag not yet stored, write pacing.
        self.gauge_interval = gauge_interval()
        self._hand_oldest: datetime | None = None
        self._lag_pending: float | None = None
        self._lag_next_write = 0.0
        self._lag_written: float | None = None
        self._lag_written_at = 0.0
        self._lag_task: asyncio.Task[None] | None = None

    # Runs in the relay's own thread, which keeps one database connection.
    def _read(self) -> list[dict[str, Any]]:
        try:
            now = time.monotonic()
            if self.tracker is None:
                self.tracker = load_tracker(grace=self.grace, now=now)
                if self.tracker is None:  # no row (migrate writes one): from the latest event on
                    self.tracker = GapTracker(cursor=latest_event_id(), grace=self.grace)
                    self._save_state(now=now, force=True)
                    return []
            self.tracker.expire(now=now)
            # Everything read so far is published (a read happens only with nothing in hand).
            self._save_state(now=now)
            rows = events_after(after=self.tracker.cursor, limit=self.batch)
            self.more_waiting = len(rows) >= self.batch
            due = self.tracker.due(now=now) if self.tracker.gaps else []
            if due:
                rows += events_by_ids(ids=due)
            fresh = set(self.tracker.absorb((row["id"] for row in rows), now=now))
            return with_batch_aggregates(sorted((row for row in rows if row["id"] in fresh), key=lambda row: row["id"]))
        except Exception:
            connection.close()  # the next read reconnects
            raise

    def _save_state(self, *, now: float, force: bool = False) -> None:
        """Keep the watermark and the gaps where the next relay finds them: at most every
        ``STATE_SAVE_EVERY`` seconds, only when they changed, only while the lease holds."""
        tracker = self.tracker
        if tracker is None or not (force or now >= self._next_save) or not self.fence():
            return
        state = (tracker.cursor, tuple(sorted(tracker.gaps)))
        if state == self._saved_state:
            return
        save_tracker(tracker)
        self._saved_state = state
        self._next_save = now + STATE_SAVE_EVERY

    def _close_db(self) -> None:
        try:
            if self.tracker is not None and not self.in_hand:
                self._save_state(now=time.monotonic(), force=True)
        except Exception as exc:  # the database is away: the next relay publishes a little again
            logger.warning("relay: saving the watermark failed: %r", exc)
        close_old_connections()
        connection.close()

    async def _run_db(self, fn: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def publish_in_hand(self) -> None:
        """Publish what was read, ``batch`` events per layer message; on a layer failure keep
        what was not sent for the next round."""
        while self.in_hand:
            if not self.fence():
                raise LeaseLost
            chunk = self.in_hand[: self.batch]
            message = {"type": EVENTS_TYPE, "events": chunk, "relay": self.token, "seq": self.seq + 1}
            await self.layer.group_send(EVENTS_GROUP, message)
            self.seq += 1
            self._sent_at = time.monotonic()
            del self.in_hand[: len(chunk)]
            self.published += len(chunk)

    async def tick(self) -> None:
        """While idle, repeat the last batch's number every ``TICK_EVERY`` seconds."""
        if self.seq and time.monotonic() - self._sent_at >= TICK_EVERY and self.fence():
            message = {"type": EVENTS_TYPE, "events": [], "relay": self.token, "seq": self.seq, "tick": True}
            await self.layer.group_send(EVENTS_GROUP, message)
            self._sent_at = time.monotonic()

    async def step(self) -> int:
        """One round: publish what is in hand, else read and publish. Returns events published."""
        before = self.published
        if not self.in_hand:
            # After a read that carried batch aggregates, the next one waits: while batches are
            # busy each read takes AGGREGATE_SPACING worth of events, with one aggregate per batch.
            await asyncio.sleep(max(self._aggregates_due - time.monotonic(), 0.0))
            rows = await self._run_db(self._read)
            if any(AGGREGATE in row for row in rows):
                self._aggregates_due = time.monotonic() + AGGREGATE_SPACING
            for row in rows:
                event = layer_event(row)
                if event is not None:
                    self.in_hand.append(event)
                    created = row["created_at"]
                    if isinstance(created, datetime) and (self._hand_oldest is None or created < self._hand_oldest):
                        self._hand_oldest = created
        await self.publish_in_hand()
        if self.published == before:
            await self.tick()
        if self._hand_oldest is not None:
            # Everything in hand is out: how late the oldest of it went.
            lag = max((timezone.now() - self._hand_oldest).total_seconds() * 1000, 0.0)
            self._lag_pending = max(self._lag_pending or 0.0, lag)
            self._hand_oldest = None
        published = self.published - before
        self._report_lag(idle=not published)
        return published

    def _report_lag(self, *, idle: bool) -> None:
        """Store the worst lag since the last write, or 0 when idle; at most once per interval,
        in the background (one write at a time)."""
        now = time.monotonic()
        if now < self._lag_next_write or (self._lag_task is not None and not self._lag_task.done()):
            return
        if self._lag_pending is not None:
            value = self._lag_pending
        elif idle and (self._lag_written != 0.0 or now - self._lag_written_at >= LAG_IDLE_REFRESH):
            value = 0.0
        else:
            return
        self._lag_pending = None
        self._lag_next_write = now + self.gauge_interval
        self._lag_written, self._lag_written_at = value, now
        self._lag_task = asyncio.create_task(in_gauge_thread(partial(store_event_lag, value)))

    async def wait_gauges(self) -> None:
        """Wait for the lag write in flight, if any."""
        if self._lag_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._lag_task, timeout=10)

    def maybe_stats(self) -> None:
        """Start computing ``job-stats`` once per interval (skipped while one is still running)."""
        now = time.monotonic()
        if now < self._next_stats or (self._stats_task is not None and not self._stats_task.done()):
            return
        self._next_stats = now + self.stats_interval
        if self.stats_wanted():
            self._stats_task = asyncio.create_task(self._publish_stats())

    def _stats_in_thread(self) -> dict[str, Any]:
        try:
            return stats_body()
        finally:
            close_old_connections()

    async def _publish_stats(self) -> None:
        if self._stats_executor is None:
            self._stats_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-stats")
        try:
            body = await asyncio.get_running_loop().run_in_executor(self._stats_executor, self._stats_in_thread)
            self.stats_computed += 1
            text = json.dumps(messages.job_stats(stats=body), cls=DjangoJSONEncoder, separators=(",", ":"))
            await self.layer.group_send(EVENTS_GROUP, {"type": STATS_TYPE, "text": text})
        except Exception as exc:  # the next interval tries again
            logger.warning("relay: stats failed: %r", exc)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        helpers = [asyncio.create_task(self._wake_on(stop))]
        if self.listen:
            self.listener = Listener(self.wake)
            helpers.append(asyncio.create_task(self.listener.run()))
        try:
            await self._run(stop)
        except LeaseLost:
            logger.warning("relay: the monitor lost its lease; stopping")
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.close()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.set()

    def _listening(self) -> bool:
        return self.listener is not None and self.listener.listening

    async def _wait_for_events(self) -> None:
        """The listening relay's wait between reads: for a notification (or the safety poll, or
        the next tick, or the next stats), and at least ``READ_SPACING`` after the last read."""
        now = time.monotonic()
        timeout = self.safety_poll
        if self.seq:  # the next tick is due (see ``tick``)
            timeout = min(timeout, self._sent_at + TICK_EVERY - now)
        if self.stats_wanted():
            timeout = min(timeout, self._next_stats - now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), max(timeout, 0.0))
        await asyncio.sleep(max(self._read_at + READ_SPACING - time.monotonic(), 0.0))

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = self.poll
        while not stop.is_set():
            # Cleared before the read: a commit during the read wakes the next wait at once.
            self.wake.clear()
            self._read_at = time.monotonic()
            try:
                published = await self.step()
                self.maybe_stats()
                backoff = self.poll
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:  # database or layer away: retry, the cursor did not move
                logger.warning("relay: %r; retrying in %.2fs", exc, backoff)
                published = 0
                backoff = min(max(backoff * 2, 0.05), 2.0)
                await asyncio.sleep(backoff)
                continue
            if stop.is_set():
                break
            if self._listening():
                if not self.more_waiting:
                    await self._wait_for_events()
            elif published:
                continue
            elif self.listener is not None:  # polling until it listens again, which wakes it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll)
            else:
                await asyncio.sleep(self.poll)

    async def close(self) -> None:
        """Close the relay thread's database connection (a test database cannot be dropped with it open)."""
        await self.wait_gauges()
        if self._stats_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._stats_task, timeout=10)
        if self._stats_executor is not None:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._stats_executor, self._close_db)
            self._stats_executor.shutdown(wait=False)
            self._stats_executor = None
        if self._executor is None:
            return
        with contextlib.suppress(Exception):
            await self._run_db(self._close_db)
        self._executor.shutdown(wait=False)
        self._executor = None


def start_relay_thread(leading: Callable[[], bool] | None = None) -> Callable[[], None]:
    """Run the relay in a thread with its own event loop (``manage.py monitor`` with Redis).

    ``leading()`` is the monitor's lease: the relay publishes nothing once it is False.
    Returns the function that stops the relay and waits for its thread.
    """
    stopped = threading.Event()

    def main() -> None:
        async def runner() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(EventRelay(fence=leading).run(stop))
            while not stopped.is_set() and not task.done():
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(runner())

    thread = threading.Thread(target=main, name="event-relay", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=15)

    return stop


# --- the hub (one per web process / event loop) -------------------------------------------
class Subscriber(Protocol):
    def deliver(self, event_id: int, job: str | None, kind: str, text: str, at: float | None = None) -> None: ...

    def catch_up_after(self, anchor: int) -> None: ...

    def deliver_stats(self, text: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name = ""
        self.members: dict[str, set[Any]] = {}
        self.recent: OrderedDict[int, None] = OrderedDict()  # ids already handed out
        self.highest = 0  # the highest event id handed out
        self.relay_token: str | None = None  # the relay whose batches arrive, and the last one's number
        self.relay_seq = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.relay: EventRelay | None = None
        self._started = asyncio.Lock()
        self._relay_stop = asyncio.Event()
        # Open sockets of this process, stored for the websocket-connections gauge.
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.sockets = 0
        self.sockets_stored: int | None = None
        # Open sockets per user in this process (the cap, JOBADMIN_WS_MAX_SOCKETS_PER_USER), and
        # what was last written of them to the cache for the other processes.
        self.user_sockets: dict[Any, int] = {}
        self.user_sockets_stored: dict[Any, int] = {}
        self._sockets_changed = asyncio.Event()

    async def start(self) -> None:
        async with self._started:
            if self.channel_name:
                return
            self.channel_name = await self.layer.new_channel("hub.")
            tune_gc()
            if isinstance(self.layer, InMemoryChannelLayer):
                # The in-process layer's default capacity (100) would drop events of a burst
                # silently (group_send ignores ChannelFull), and channels 4.3 does not apply
                # its channel_capacity option: size the hub's queue here.
                self.layer.channels[self.channel_name] = asyncio.Queue(maxsize=HUB_CAPACITY)
            await self.layer.group_add(EVENTS_GROUP, self.channel_name)
            self.tasks.append(asyncio.create_task(self._receive_loop()))
            self.tasks.append(asyncio.create_task(self._sockets_loop()))
            if relay_in_web():
                # On the in-process layer this hub is the only listener: the relay hands its
                # batches over directly (no layer round trip through a busy event loop, no copy).
                layer = LocalLayer(self) if isinstance(self.layer, InMemoryChannelLayer) else self.layer
                self.relay = EventRelay(layer=layer, stats_wanted=lambda: bool(self.members.get(STATS_GROUP)))
                self.tasks.append(asyncio.create_task(self.relay.run(self._relay_stop)))

    async def stop(self) -> None:
        self._relay_stop.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
        self.tasks.clear()
        self.channel_name = ""
        if self.sockets_stored:  # leave the gauge as this process found it
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(in_gauge_thread(partial(ws_connections_store, token=self.token, count=0)), 5)
            self.sockets_stored = 0
        if self.user_sockets_stored:
            gone = dict.fromkeys(self.user_sockets_stored, 0)
            with contextlib.suppress(BaseException):
                store = partial(ws_user_sockets_store, token=self.token, counts=gone)
                await asyncio.wait_for(in_gauge_thread(store), 5)
            self.user_sockets_stored = {}

    def socket_opened(self, user_pk: Any = None) -> None:
        self.sockets += 1
        if user_pk is not None:
            self.user_sockets[user_pk] = self.user_sockets.get(user_pk, 0) + 1
        self._sockets_changed.set()

    def socket_closed(self, user_pk: Any = None) -> None:
        self.sockets = max(self.sockets - 1, 0)
        if user_pk is not None:
            left = self.user_sockets.get(user_pk, 0) - 1
            if left > 0:
                self.user_sockets[user_pk] = left
            else:
                self.user_sockets.pop(user_pk, None)
        self._sockets_changed.set()

    async def user_sockets_total(self, user_pk: Any) -> int:
        """``user_pk``'s open sockets: this process's, plus the other processes' where they share
        counts (Redis). The cache away (or slow): this process's alone, never a refusal for it."""
        mine = self.user_sockets.get(user_pk, 0)
        if not ws_sockets_shared():
            return mine
        try:
            elsewhere = await asyncio.wait_for(
                in_gauge_thread(partial(ws_user_sockets_elsewhere, user_pk=user_pk, token=self.token)), 2.0
            )
        except Exception as exc:
            logger.warning("hub: reading the sockets of user %s in other processes failed: %r", user_pk, exc)
            return mine
        return mine + int(elsewhere)

    async def _store_user_sockets(self) -> None:
        counts = dict(self.user_sockets)
        changed = {pk: counts.get(pk, 0) for pk in set(counts) | set(self.user_sockets_stored)}
        if not changed:
            return
        await in_gauge_thread(partial(ws_user_sockets_store, token=self.token, counts=changed))
        self.user_sockets_stored = counts

    async def _sockets_loop(self) -> None:
        """Store the socket count on a change (at most once per interval) and every WS_REFRESH while > 0."""
        while True:
            if self.sockets:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sockets_changed.wait(), WS_REFRESH)
            else:
                await self._sockets_changed.wait()
            self._sockets_changed.clear()
            count = self.sockets
            if count == 0 and self.sockets_stored == 0:
                continue
            try:
                await in_gauge_thread(partial(ws_connections_store, token=self.token, count=count))
                self.sockets_stored = count
                if ws_sockets_shared():
                    await self._store_user_sockets()
            except Exception as exc:  # the cache is away: try again on the next change or refresh
                logger.warning("hub: storing the socket count failed: %r", exc)
            await asyncio.sleep(gauge_interval())

    async def join(self, group: str, subscriber: Any) -> None:
        await self.start()
        self.members.setdefault(group, set()).add(subscriber)

    async def leave(self, group: str, subscriber: Any) -> None:
        members = self.members.get(group)
        if not members or subscriber not in members:
            return
        members.discard(subscriber)
        if not members:
            del self.members[group]

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the layer went away: keep trying, subscribers resume with since
                logger.warning("hub: receive failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == STATS_TYPE:
            for subscriber in list(self.members.get(STATS_GROUP, ())):
                subscriber.deliver_stats(message["text"])
            return
        if message.get("type") != EVENTS_TYPE:
            return
        self._check_sequence(message)
        for event in message["events"]:
            event_id = event["id"]
            # A batch the relay sent again (it could not tell that the layer took it) repeats events.
            if event_id in self.recent:
                continue
            self.recent[event_id] = None
            self.highest = max(self.highest, event_id)
            if len(self.recent) > 50_000:
                self.recent.popitem(last=False)
            targets: set[Any] = set()
            for group in event["groups"]:
                targets.update(self.members.get(group, ()))
            for subscriber in targets:
                subscriber.deliver(event_id, event["job"], event["kind"], event["text"], event["at"])

    def _check_sequence(self, message: dict[str, Any]) -> None:
        """A batch number skipped means batches this process never received (its layer
        connection was away while the relay published): its sockets read the log again."""
        token, seq = message.get("relay"), message.get("seq")
        if token is None or not isinstance(seq, int):
            return
        tick = bool(message.get("tick"))
        if token != self.relay_token:
            # Another relay (a monitor failover) numbers from 1; the first one this hub hears
            # of may be well on (this process started after it).
            first = self.relay_token is None
            self.relay_token, self.relay_seq = token, 0
            if first:
                self.relay_seq = seq
                return
        expected = self.relay_seq if tick else self.relay_seq + 1
        if seq > expected:
            last_missed = seq if tick else seq - 1
            logger.warning("hub: missed relay batches %s-%s; reading the log again", self.relay_seq + 1, last_missed)
            self._missed(max(0, self.highest - MISSED_MARGIN))
        self.relay_seq = max(self.relay_seq, seq)

    def _missed(self, anchor: int) -> None:
        for subscriber in {s for members in self.members.values() for s in members}:
            subscriber.catch_up_after(anchor)


class LocalLayer:
    """The relay's layer when it shares the process (and Channels' in-process layer) with the hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if group == EVENTS_GROUP:
            self.hub.dispatch(message)


def relay_in_web() -> bool:
    """The embedded default runs the relay in the web process; with Redis, ``monitor`` runs it.

    ``JOBADMIN_RELAY_IN_WEB=1`` puts it in the web process anyway (one daphne, no monitor).
    """
    return bool(settings.JOBADMIN_RELAY_IN_WEB)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub


async def stop_hub() -> None:
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()
