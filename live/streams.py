"""What the SSE stream and the long-poll share (docs/live.md): a hub member per request, the
log reads, the access re-check, and the release of the request's thread.

Both are Django views of the JSON API (DRF does the authentication, throttles, the policy
check and the 400s), answering with a ``StreamingHttpResponse`` over an async iterator: under
daphne (ASGI) Django iterates it on the event loop, so an open stream costs a hub entry and a
small outbox, not a thread. The request's own thread (asgiref's per-request executor, which
ran the sync view and middleware) is let go when the iteration starts (``release_request_thread``),
and the stream's database reads then run where the websocket's do (``live.consumers``' helpers,
the process's one sync thread).

A stream delivers like a websocket (``live.consumers``): it joins the hub before it reads the
log, so what commits after the read arrives live and what both carry is sent once (``seen``);
the log is read again shortly after (``CATCH_UP_AFTER``) and whenever the hub missed relay
batches; a reader that falls behind has a job's queued progress replaced by the newer one
(``consumers.behind``), status changes never; an outbox that still overflows ends the stream
(the client resumes with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from django.db import connection, connections
from django.utils import timezone

from jobs import policy
from jobs.models import EventKind, JobEvent
from live.consumers import OUTBOX_MAX, REPLAY_PAGE, _events, _shared_id_reads, behind, channel_group
from live.middleware import Identity, user_of
from live.relay import _EVENT_FIELDS, STATS_GROUP, _group_events, get_hub, with_batch_aggregates

logger = logging.getLogger(__name__)

FINAL_KINDS = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED})
MAX_CHANNELS = 20  # channels of one stream or poll
# A long-poll answer stops below an event id that is not visible yet while the event after it
# is younger than this (PostgreSQL commits ids out of order): the client's next ``after`` must
# not jump over an event that commits a moment later. An older hole was a rolled-back insert.
HOLE_GRACE = 5.0
HOLE_SCAN_MAX = 10_000  # ids between ``after`` and the answer's last one that are checked for holes


@dataclass(frozen=True)
class Grant:
    """Who a stream serves and by what right, to check again while it stays open: its identity
    as the websocket keeps one (``live.middleware``: ``("token", key)``, ``("session", key)``)."""

    user_id: int
    identity: Identity
    channels: tuple[policy.Channel, ...]


def grant_of(request: Any, channels: list[policy.Channel]) -> Grant:
    """The ``Grant`` of a DRF request that passed authentication."""
    token = getattr(request.auth, "key", None)
    session = getattr(getattr(request._request, "session", None), "session_key", None)
    identity: Identity
    if token is not None:
        identity = ("token", token)
    elif session:
        identity = ("session", session)
    else:
        identity = ("user", request.user.pk)
    return Grant(user_id=int(request.user.pk), identity=identity, channels=tuple(channels))


def still_allowed(grant: Grant) -> bool:
    """Whether the stream's user may still read every one of its channels: the websocket's
    re-check (``live.middleware.user_of``: an active user, the token not deleted, the session not
    ended by a logout or a password change), then the policy, with the user read afresh."""
    user = user_of(grant.identity)
    if not policy.signed_in(user) or user.pk != grant.user_id:
        return False
    return all(policy.may_subscribe(user=user, channel=channel) for channel in grant.channels)


@database_sync_to_async
def may_still(grant: Grant) -> bool:
    return still_allowed(grant)


def release_request_thread() -> None:
    """Let go of the request's thread while the response streams.

    Django runs a request's sync code (its sync middleware, a sync view) in a thread of the
    request's own (asgiref's ``ThreadSensitiveContext``), which lives until the response has
    been sent: one idle thread, and its database connection, per open stream. Called from the
    response's iterator, once the view and the middleware are done: that thread's connections
    go back (the pool), it ends, and the stream's own sync calls go to the process's shared
    sync thread, as the websocket consumer's do. ``response.close()`` afterwards gets a thread
    of its own for its moment. Relies on asgiref's ``SyncToAsync.thread_sensitive_context`` and
    ``context_to_thread_executor`` (asgiref 3.x); without them nothing is done.
    """
    var = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if var is None or executors is None:
        return
    context = var.get(None)
    if context is None:
        return
    var.set(None)  # this task only: the handler's own context keeps its value
    executor = executors.pop(context, None)
    if executor is not None:
        executor.submit(connections.close_all)
        executor.shutdown(wait=False)


# --- log reads (sync; through database_sync_to_async) ----------------------------------------
def _merged(groups: list[str], after: int) -> Any:
    querysets = [qs for qs in (_group_events(group, after) for group in groups) if qs is not None]
    return functools.reduce(operator.or_, querysets) if querysets else None


def events_of_groups(*, groups: list[str], after: int, limit: int) -> list[dict[str, Any]]:
    """The events of any of ``groups`` after ``after``, oldest first, each once."""
    queryset = _merged(groups, after)
    return (
        [] if queryset is None else with_batch_aggregates(list(queryset.order_by("id").values(*_EVENT_FIELDS)[:limit]))
    )


def settled(rows: list[dict[str, Any]], *, after: int) -> list[dict[str, Any]]:
    """``rows`` up to the first id that may still commit below them (``settle``)."""
    return settle(rows, after=after)[0]


def settle(rows: list[dict[str, Any]], *, after: int) -> tuple[list[dict[str, Any]], float | None]:
    """``rows`` up to the first id that may still commit below them (see ``HOLE_GRACE``), and
    the seconds until that hole stops holding them back (None: nothing held back).

    On PostgreSQL an event id is taken at INSERT and visible at COMMIT: between ``after`` and
    the last row an id missing from the whole log is either a transaction still open or a
    rolled-back one. While the event just above it is younger than ``HOLE_GRACE``, the rows
    above the hole wait for the next read, which a waiting poll makes when the grace ends (a
    rolled-back id) or when the hole's event commits and wakes it. SQLite gives ids in commit order.
    """
    if not rows or connection.vendor == "sqlite":
        return rows, None
    last = rows[-1]["id"]
    span = last - after
    if span <= 0 or span > HOLE_SCAN_MAX:
        return rows, None
    present = JobEvent.objects.filter(id__gt=after, id__lte=last)
    if present.count() == span:
        return rows, None
    ids = set(present.values_list("id", flat=True))
    holes = sorted(set(range(after + 1, last + 1)) - ids)
    young = timezone.now() - timedelta(seconds=HOLE_GRACE)
    for hole in holes:
        above = JobEvent.objects.filter(id__gt=hole).order_by("id").values_list("created_at", flat=True).first()
        if above is not None and above > young:
            return [row for row in rows if row["id"] < hole], (above - young).total_seconds()
    return rows, None


@database_sync_to_async
def read_events(groups: list[str], after: int, limit: int) -> list[dict[str, Any]]:
    return events_of_groups(groups=groups, after=after, limit=limit)


@database_sync_to_async
def read_settled_events(groups: list[str], after: int, limit: int) -> tuple[list[dict[str, Any]], float | None]:
    """``events_of_groups`` through ``settle``: the rows an answer may carry, and how long a
    hole below the rest holds them back."""
    return settle(events_of_groups(groups=groups, after=after, limit=limit), after=after)


# --- the hub member ----------------------------------------------------------------------------
class Entry:
    __slots__ = ("at", "event_id", "job", "kind", "text")

    def __init__(self, event_id: int, job: str | None, kind: str, text: str, at: float | None) -> None:
        self.event_id, self.job, self.kind, self.text, self.at = event_id, job, kind, text, at


class StreamMember:
    """One stream's (or waiting poll's) place in the hub: the hub's ``Subscriber``.

    ``floor``: the stream's ``since``; a catch-up never re-reads at or below it, so a resumed
    stream repeats nothing the client already had.
    """

    def __init__(self, *, floor: int = 0) -> None:
        self.groups: list[str] = []
        self.outbox: deque[Entry] = deque()
        self.pending_progress: dict[str, Entry] = {}
        self.seen: OrderedDict[int, None] = OrderedDict()
        self.ready = asyncio.Event()
        self.overflowed = False
        self.floor = floor
        self.catch_ups: set[asyncio.Task[Any]] = set()

    async def join(self, channels: list[policy.Channel]) -> None:
        hub = get_hub()
        for channel in channels:
            group = channel_group(channel)
            if group not in self.groups:
                self.groups.append(group)
                await hub.join(group, self)

    async def leave(self) -> None:
        for task in list(self.catch_ups):
            task.cancel()
        hub = get_hub()
        for group in self.groups:
            await hub.leave(group, self)

    @property
    def log_groups(self) -> list[str]:
        return [group for group in self.groups if group != STATS_GROUP]

    # --- from the hub (synchronous, must not block) ------------------------------------------
    def deliver(self, event_id: int, job: str | None, kind: str, text: str, at: float | None = None) -> None:
        if self.overflowed or event_id in self.seen:
            return
        if job is not None:
            queued = self.pending_progress.get(job)
            if kind == EventKind.PROGRESS and queued is not None and behind(len(self.outbox), queued.at):
                self.mark_seen(queued.event_id)  # replaced: a catch-up must not bring it back
                queued.event_id, queued.text, queued.at = event_id, text, at
                return
            self.pending_progress.pop(job, None)
        entry = Entry(event_id, job, kind, text, at)
        if job is not None and kind == EventKind.PROGRESS:
            self.pending_progress[job] = entry
        self.outbox.append(entry)
        if len(self.outbox) > OUTBOX_MAX:
            self.overflowed = True
            self.outbox.clear()
            self.pending_progress.clear()
        self.ready.set()

    def deliver_stats(self, text: str) -> None:
        if not self.overflowed:
            self.outbox.append(Entry(0, None, "stats", text, None))
            self.ready.set()

    def catch_up_after(self, anchor: int) -> None:
        """The hub missed relay batches: read the log again after ``anchor`` (never below ``floor``)."""
        self.read_again_later(max(anchor, self.floor), delay=0.0)

    # --- catch-up reads ------------------------------------------------------------------------
    def read_again_later(self, anchor: int, *, delay: float) -> None:
        task = asyncio.ensure_future(self._read_again(anchor, delay))
        self.catch_ups.add(task)
        task.add_done_callback(self.catch_ups.discard)

    async def _read_again(self, anchor: int, delay: float) -> None:
        """The consumer's catch-up read: ids first, gathered for the whole process per slot
        (``consumers._SharedIdReads``), rows only for the ids this stream has not had. A read of
        whole rows per stream, 1,000 streams at once, held the GIL for seconds."""
        await asyncio.sleep(delay)
        for group in self.log_groups:
            after = anchor
            while True:
                try:
                    ids = await _shared_id_reads().ids_after(group, after, REPLAY_PAGE)
                    wanted = [event_id for event_id in ids if event_id not in self.seen]
                    rows = await _events(wanted) if wanted else []
                except Exception as exc:  # the database is away: the client resumes with Last-Event-ID
                    logger.warning("stream: a catch-up read failed: %r", exc)
                    return
                for row in rows:
                    if row["id"] not in self.seen:
                        self.deliver_row(row)
                if len(ids) < REPLAY_PAGE:
                    break
                after = ids[-1]

    def deliver_row(self, row: dict[str, Any]) -> None:
        """An event read from the log, queued like a live one (the stream sends it once)."""
        from live.relay import layer_event

        event = layer_event(row)
        if event is not None:
            self.deliver(event["id"], event["job"], event["kind"], event["text"], event["at"])

    # --- for the stream -------------------------------------------------------------------------
    def mark_seen(self, event_id: int) -> bool:
        if event_id in self.seen:
            return False
        self.seen[event_id] = None
        if len(self.seen) > 8192:
            self.seen.popitem(last=False)
        return True

    def take(self) -> list[Entry]:
        """What is queued and not sent yet, in arrival order; the outbox is empty afterwards."""
        self.ready.clear()
        taken = []
        while self.outbox:
            entry = self.outbox.popleft()
            if entry.job is not None and self.pending_progress.get(entry.job) is entry:
                del self.pending_progress[entry.job]
            if entry.event_id and not self.mark_seen(entry.event_id):
                continue
            taken.append(entry)
        return taken


def message_type(kind: str) -> str:
    """The ``event:`` of an entry: its websocket message type."""
    if kind == "stats":
        return "job-stats"
    return "job-alert" if kind == EventKind.ALERT else "job-update"
