"""Server-Sent Events: ``GET /api/stream/?channels=…`` and ``GET /api/jobs/<id>/stream/`` (docs/live.md).

Each event is ``id: <event_id>``, ``event: job-update|job-alert|job-stats`` and ``data:`` the
websocket message's JSON; a comment every ``JOBADMIN_SSE_KEEPALIVE`` seconds keeps proxies from
closing an idle stream, and at the same moment the stream asks the policy again (and whether its
token or session still holds): a stream that may no longer read a channel gets ``event: error``
(``forbidden``) and ends. A client resumes with ``Last-Event-ID`` (an ``EventSource`` sends it by
itself) or ``since=``: the log's events after it come first, then the live ones, each once.

The one-job stream replays the job's whole log without ``since``, and ends after the job's final
status (completed, failed, cancelled); asked again after that with nothing left to send, it
answers 204, which tells an ``EventSource`` to stop reconnecting.

Why not django-eventstream: it keeps its own event store and per-channel ids
(``django_eventstream.models.Event``) and its own channel permissions; JobAdmin's stream is its
event log, its ids, its policy and its hub. Django's ``StreamingHttpResponse`` over an async
iterator does the streaming under ASGI with nothing added (see ``live.streams``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request

from jobs import policy
from jobs.api.schema import errors
from jobs.models import Job, JobEvent
from live import messages
from live.api import TOKEN_HELP, TOKEN_PATTERN, ChannelsField, LiveView, serves_live
from live.consumers import CATCH_UP_AFTER, CATCH_UP_MARGIN, REPLAY_MAX, REPLAY_PAGE, _latest_event_id, channel_group
from live.relay import STATS_GROUP, message_for
from live.streams import (
    FINAL_KINDS,
    Grant,
    StreamMember,
    events_of_groups,
    grant_of,
    may_still,
    message_type,
    read_events,
    release_request_thread,
)
from monitoring.serializers import QuerySerializer

MEDIA_TYPE = "text/event-stream"
RETRY_MS = 2000  # an EventSource's reconnect delay
LAST_EVENT_ID = "Last-Event-ID"


class StreamQuerySerializer(QuerySerializer):
    since = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,
        help_text="Replay the events after this event_id first (the Last-Event-ID header wins over it).",
    )
    token = serializers.RegexField(TOKEN_PATTERN, required=False, max_length=64, help_text=TOKEN_HELP)


class ChannelStreamQuerySerializer(StreamQuerySerializer):
    channels = ChannelsField(
        required=False,
        help_text="Comma-separated: job:<uuid>, user:<id>, batch:<id>, stats, alerts, all (default: your own user).",
    )


@dataclass(frozen=True)
class Plan:
    """What a stream sends, decided by the view (sync, before the response starts)."""

    grant: Grant
    since: int | None
    job: str | None = None  # the one-job stream's job
    live: bool = True  # False under WSGI: the log's events, then the end


def _since(request: Request, query: dict[str, Any]) -> int | None:
    header = request.headers.get(LAST_EVENT_ID)
    if header is None or not header.strip():
        return query.get("since")
    value = header.strip()
    if not value.isdigit() or len(value) > 19:
        raise exceptions.ValidationError({LAST_EVENT_ID: ["Must be an event_id (a non-negative integer)."]})
    return int(value)


def frame(*, event_id: int, kind: str, text: str) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {message_type(kind)}\ndata: {text}\n\n"


def error_frame(code: str, message: str, **extra: Any) -> bytes:
    body = json.dumps(messages.error(code=code, message=message, **extra), separators=(",", ":"))
    return f"event: error\ndata: {body}\n\n".encode()


@database_sync_to_async
def _job_is_final(job_id: str) -> bool:
    status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    return status in FINAL_KINDS


async def stream(plan: Plan) -> AsyncIterator[bytes]:
    """The body of a stream: replay after ``since``, then live, keep-alives and re-checks."""
    release_request_thread()
    member = StreamMember(floor=plan.since or 0)
    keepalive = float(settings.JOBADMIN_SSE_KEEPALIVE)
    loop = asyncio.get_running_loop()
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        if plan.live:
            await member.join(list(plan.grant.channels))
        latest = await _latest_event_id()
        final_now = plan.job is not None and await _job_is_final(plan.job)
        # Replay: page by page, up to REPLAY_MAX; past it the stream ends and the client
        # resumes from the last id it got (an EventSource does so by itself).
        since = plan.since
        if since is not None and member.log_groups:
            after, total = since, 0
            while True:
                rows = await read_events(member.log_groups, after, REPLAY_PAGE)
                chunk, ended = _frames_of_rows(member, rows, plan.job)
                if chunk:
                    yield chunk
                if ended:
                    return
                total += len(rows)
                if len(rows) < REPLAY_PAGE:
                    break
                after = rows[-1]["id"]
                if total >= REPLAY_MAX:
                    yield error_frame(
                        messages.REPLAY_TRUNCATED,
                        f"replay stopped after {REPLAY_MAX} events; resume from {after}",
                        last_event_id=after,
                    )
                    return
        if final_now or not plan.live:
            return
        anchor = latest if since is None else max(since, latest - CATCH_UP_MARGIN)
        for delay in CATCH_UP_AFTER:
            member.read_again_later(anchor, delay=delay)
        # The first re-check at a random point of the interval: streams opened together (a
        # restart, a benchmark) must not all ask the database in the same instant.
        next_check = loop.time() + keepalive * random.uniform(0.5, 1.0)
        while True:
            if not member.outbox:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(member.ready.wait(), max(0.0, next_check - loop.time()))
            if member.overflowed:
                yield error_frame(messages.TOO_SLOW, "the stream fell too far behind; resume with Last-Event-ID")
                return
            entries = member.take()
            if entries:
                yield "".join(frame(event_id=e.event_id, kind=e.kind, text=e.text) for e in entries).encode()
                if plan.job is not None and any(e.job == plan.job and e.kind in FINAL_KINDS for e in entries):
                    return
            if loop.time() >= next_check:
                if not await may_still(plan.grant):
                    yield error_frame(messages.FORBIDDEN, policy.FORBIDDEN_CHANNEL)
                    return
                yield b": keep-alive\n\n"
                # The first re-check at a random point of the interval: streams opened together (a
        # restart, a benchmark) must not all ask the database in the same instant.
        next_check = loop.time() + keepalive * random.uniform(0.5, 1.0)
    finally:
        await member.leave()


def _frames_of_rows(member: StreamMember, rows: list[dict[str, Any]], job: str | None) -> tuple[bytes, bool]:
    parts, ended = [], False
    for row in rows:
        message = message_for(row)
        if message is None or not member.mark_seen(row["id"]):
            continue
        text = json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))
        parts.append(frame(event_id=row["id"], kind=row["kind"], text=text))
        if job is not None and str(row["job_id"]) == job and row["kind"] in FINAL_KINDS:
            ended = True
            break
    return "".join(parts).encode(), ended


def replay_only(plan: Plan) -> bytes:
    """Under WSGI: the log's events after ``since``, read at once (a stream that ends at once)."""
    member = StreamMember(floor=plan.since or 0)
    groups = [group for group in (channel_group(c) for c in plan.grant.channels) if group != STATS_GROUP]
    parts = [f"retry: {RETRY_MS}\n\n".encode()]
    if plan.since is not None and groups:
        rows = events_of_groups(groups=groups, after=plan.since, limit=REPLAY_PAGE)
        parts.append(_frames_of_rows(member, rows, plan.job)[0])
    return b"".join(parts)


def streaming_response(plan: Plan) -> HttpResponse | StreamingHttpResponse:
    response: HttpResponse | StreamingHttpResponse
    if plan.live:
        response = StreamingHttpResponse(stream(plan), content_type=MEDIA_TYPE)
    else:
        response = HttpResponse(replay_only(plan), content_type=MEDIA_TYPE)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


SSE_RESPONSE = OpenApiResponse(
    OpenApiTypes.STR,
    description=(
        "text/event-stream: `id: <event_id>`, `event: job-update|job-alert|job-stats` (or `error`, after which "
        "the stream ends), `data:` the websocket message's JSON; a `: keep-alive` comment every "
        "JOBADMIN_SSE_KEEPALIVE seconds."
    ),
)


class StreamView(LiveView):
    query_serializers = {"get": ChannelStreamQuerySerializer}

    @extend_schema(
        summary="Live events as Server-Sent Events",
        description=(
            "The websocket's channels over SSE (docs/live.md). Resume with the `Last-Event-ID` header (an "
            "EventSource sends it by itself) or `since`; the header wins."
        ),
        parameters=[ChannelStreamQuerySerializer],
        responses={(200, MEDIA_TYPE): SSE_RESPONSE, **errors(403)},
        operation_id="stream",
    )
    def get(self, request: Request) -> HttpResponse | StreamingHttpResponse:
        query = ChannelStreamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = _since(request, query.validated_data)
        channels = self.channels_of(request, query.validated_data.get("channels"))
        plan = Plan(grant=grant_of(request, channels), since=since, live=serves_live(request))
        return streaming_response(plan)


class JobStreamView(LiveView):
    query_serializers = {"get": StreamQuerySerializer}

    @extend_schema(
        summary="One job's events as Server-Sent Events",
        description=(
            "The job's log from the start (or after Last-Event-ID / since), then live; the stream ends after the "
            "job's final status. 204 when the job has finished and nothing is left after since."
        ),
        parameters=[StreamQuerySerializer],
        responses={
            (200, MEDIA_TYPE): SSE_RESPONSE,
            204: OpenApiResponse(description="The job has finished; nothing after since."),
            **errors(403, 404),
        },
        operation_id="jobs_stream",
    )
    def get(self, request: Request, pk: str) -> HttpResponse | StreamingHttpResponse:
        query = StreamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = _since(request, query.validated_data)
        channel = policy.parse_channel(f"job:{pk}")
        if channel is None:
            raise exceptions.NotFound("No such job.")
        channels = self.channels_of(request, [channel])
        status = Job.objects.filter(pk=channel.key).values_list("status", flat=True).first()
        after = since or 0
        if status in FINAL_KINDS and not JobEvent.objects.filter(job_id=channel.key, id__gt=after).exists():
            return HttpResponse(status=204)
        plan = Plan(grant=grant_of(request, channels), since=after, job=channel.key, live=serves_live(request))
        return streaming_response(plan)
