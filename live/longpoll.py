"""Long-poll: ``GET /api/events/?channels=…&after=<event_id>&wait=<s>`` (docs/live.md).

For clients that can keep neither a websocket nor a stream open. The answer is
``{"events": [...], "last_event_id": N}`` (each event the websocket message's JSON) as soon as
the log has events of the channels after ``after``, or an empty list after ``wait`` seconds (at
most 30). The next request passes ``after=last_event_id``. Without ``after`` it answers at once
with no events and the log's latest id, where a client starts.

Nothing missed, nothing repeated: the answer is read from the log, in id order, and stops below
an id that may still commit (``live.streams.settled``), so ``last_event_id`` never jumps over an
event that becomes visible a moment later. While it waits the request is a hub member like a
stream (woken by the live path, the log read again at least every ``RECHECK`` s) and holds no
thread (``live.streams``). Under WSGI it answers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from jobs.api.json_schema import openapi_schema
from jobs.api.schema import errors
from live import messages
from live.api import TOKEN_HELP, TOKEN_PATTERN, ChannelsField, LiveView, serves_live
from live.consumers import REPLAY_PAGE, _latest_event_id, channel_group
from live.relay import STATS_GROUP, latest_event_id, message_for
from live.streams import StreamMember, events_of_groups, read_settled_events, release_request_thread, settled
from monitoring.serializers import QuerySerializer

MAX_WAIT = 30.0
DEFAULT_WAIT = 25.0
RECHECK = 2.0  # seconds between log reads while waiting, whatever the live path says
HOLE_SLACK = 0.05  # past a hole's grace (live.streams.settle) before reading again, for clock steps


class LongPollQuerySerializer(QuerySerializer):
    channels = ChannelsField(
        required=False,
        help_text="Comma-separated: job:<uuid>, user:<id>, batch:<id>, alerts, all (default: your own user).",
    )
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1, help_text="Answer with the events after this event_id."
    )
    wait = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_WAIT,
        default=DEFAULT_WAIT,
        help_text="Seconds to wait for an event before answering with none.",
    )
    token = serializers.RegexField(TOKEN_PATTERN, required=False, max_length=64, help_text=TOKEN_HELP)


class LiveMessageSerializer(serializers.Serializer):
    """A websocket message as an API body: documented by its JSON Schema in ``live.messages``, the
    one its builder is tested against (``_LiveMessageSchema``), so the two cannot disagree."""

    message_type = ""


class JobUpdateMessageSerializer(LiveMessageSerializer):
    message_type = "job-update"


class JobAlertMessageSerializer(LiveMessageSerializer):
    message_type = "job-alert"


class _LiveMessageSchema(OpenApiSerializerExtension):
    target_class = LiveMessageSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        return openapi_schema(messages.SCHEMAS[self.target.message_type])


# What ``message_for`` makes of an event row: a job's update or an alert (``job-stats`` is not
# in the log, so never in a long-poll answer). ``type`` tells which.
@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="LiveEvent",
        serializers={each.message_type: each for each in (JobUpdateMessageSerializer, JobAlertMessageSerializer)},
        resource_type_field_name="type",
    )
)
class LiveEventField(serializers.JSONField):
    """One event of a long-poll answer; documented as a ``LiveEvent`` (the value is passed through)."""


class LongPollResponseSerializer(serializers.Serializer):
    events = serializers.ListField(
        child=LiveEventField(), help_text="Websocket messages: job-update, job-alert (docs/websocket.md)."
    )
    last_event_id = serializers.IntegerField(help_text="Pass as `after` next time.")


def _answer(events: list[dict[str, Any]], last_event_id: int) -> bytes:
    body = {"events": events, "last_event_id": last_event_id}
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


async def poll(*, channels: list[Any], after: int | None, wait: float) -> AsyncIterator[bytes]:
    release_request_thread()
    if after is None:
        yield _answer([], await _latest_event_id())
        return
    member = StreamMember(floor=after)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        if wait > 0:
            await member.join(channels)  # before the read: what commits after it wakes the wait
        groups = _groups(channels)
        while True:
            member.take()  # the live path only wakes the wait: the answer is read from the log
            rows, held = await read_settled_events(groups, after, REPLAY_PAGE)
            if rows or loop.time() >= deadline:
                break
            # The next read: at the next recheck, or as soon as a hole stops holding events back.
            pause = min(RECHECK, max(0.0, deadline - loop.time()), RECHECK if held is None else held + HOLE_SLACK)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(member.ready.wait(), pause)
            if member.ready.is_set():
                await asyncio.sleep(0.02)  # the rest of a burst in the same answer
    finally:
        await member.leave()
    events = [message for message in (message_for(row) for row in rows) if message is not None]
    yield _answer(events, rows[-1]["id"] if rows else after)


def answer_now(channels: list[Any], after: int | None) -> bytes:
    if after is None:
        return _answer([], latest_event_id())
    rows = settled(events_of_groups(groups=_groups(channels), after=after, limit=REPLAY_PAGE), after=after)
    events = [message for message in (message_for(row) for row in rows) if message is not None]
    return _answer(events, rows[-1]["id"] if rows else after)


def _groups(channels: list[Any]) -> list[str]:
    return [group for group in (channel_group(channel) for channel in channels) if group != STATS_GROUP]


class LongPollView(LiveView):
    query_serializers = {"get": LongPollQuerySerializer}

    @extend_schema(
        summary="Live events by long-polling",
        description=(
            "Answers as soon as the log has events of the channels after `after`, or with none after `wait` "
            "seconds; then ask again with `after=last_event_id` (docs/live.md)."
        ),
        parameters=[LongPollQuerySerializer],
        responses={200: LongPollResponseSerializer, **errors(403)},
        operation_id="events_poll",
    )
    def get(self, request: Request) -> HttpResponse | StreamingHttpResponse:
        query = LongPollQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        channels = self.channels_of(request, query.validated_data.get("channels"))
        after = query.validated_data.get("after")
        response: HttpResponse | StreamingHttpResponse
        if serves_live(request):
            body = poll(channels=channels, after=after, wait=query.validated_data["wait"])
            response = StreamingHttpResponse(body, content_type="application/json")
        else:  # WSGI: at once, without waiting (a thread would be held for the wait)
            response = HttpResponse(answer_now(channels, after), content_type="application/json")
        response["Cache-Control"] = "no-store"
        return response
