"""Websocket messages: one builder and one JSON Schema per server-to-client type.

Like zulip's ``event_types.py``: the builders are the only place a message is shaped,
and ``tests/live/test_messages.py`` checks every builder's output against its schema,
so a frontend can trust the shapes documented in ``docs/websocket.md``. Every schema
names all of its message's fields and refuses any other: a field is added here and in
its builder together; none is renamed.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from jobs.models import ACTION_NAMES, EventKind, JobStatus
from jobs.services.batches import BatchStatus, BatchSummary
from monitoring.models import AlertStatus

# --- error codes -------------------------------------------------------------------------
BAD_JSON = "bad-json"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
UNKNOWN_CHANNEL = "unknown-channel"
FORBIDDEN = "forbidden"
TOO_LARGE = "too-large"
RATE_LIMITED = "rate-limited"
REPLAY_TRUNCATED = "replay-truncated"
TOO_MANY_SOCKETS = "too-many-sockets"  # then close 4429 (JOBADMIN_WS_MAX_SOCKETS_PER_USER)
TOO_MANY_SUBSCRIPTIONS = "too-many-subscriptions"  # JOBADMIN_WS_MAX_SUBSCRIPTIONS; the socket stays open
TOO_SLOW = "too-slow"  # an SSE stream that fell too far behind ends with it (resume with Last-Event-ID)
ERROR_CODES = (
    BAD_JSON,
    BAD_MESSAGE,
    UNKNOWN_TYPE,
    UNKNOWN_CHANNEL,
    FORBIDDEN,
    TOO_LARGE,
    RATE_LIMITED,
    REPLAY_TRUNCATED,
    TOO_MANY_SOCKETS,
    TOO_MANY_SUBSCRIPTIONS,
    TOO_SLOW,
)

# --- close codes -------------------------------------------------------------------------
CLOSE_UNAUTHENTICATED = 4401  # no valid session or token; also once the user, session or token is gone
CLOSE_FLOOD = 4429  # kept flooding after rate-limit errors
CLOSE_TOO_MANY_SOCKETS = 4429  # the user has JOBADMIN_WS_MAX_SOCKETS_PER_USER open (after a too-many-sockets error)
CLOSE_TOO_SLOW = 4408  # could not keep up even with progress conflated: resume with since

# The canonical spellings (jobs.policy.parse_channel): what ``subscribed`` and ``welcome`` name.
_UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CHANNEL_PATTERN = rf"^(job:{_UUID_PATTERN}|(user|batch):(0|[1-9][0-9]{{0,17}})|stats|alerts|all)$"
# The event kinds a ``job-update`` carries: every kind of a job's own event (not alerts, not queues).
JOB_EVENT_KINDS = [
    kind for kind in EventKind.values if kind not in (EventKind.ALERT, EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED)
]


def welcome(*, user: Any, latest_event_id: int, channels: list[str]) -> dict[str, Any]:
    return {
        "type": "welcome",
        "user": {"id": user.pk, "username": user.get_username(), "is_staff": bool(user.is_staff)},
        "latest_event_id": latest_event_id,
        "channels": channels,
    }


def subscribed(*, channel: str, since: int | None, replayed: int, latest_event_id: int) -> dict[str, Any]:
    return {
        "type": "subscribed",
        "channel": channel,
        "since": since,
        "replayed": replayed,
        "latest_event_id": latest_event_id,
    }


def unsubscribed(*, channel: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    """``reason`` (an error code, ``forbidden``) and ``message`` when the server ended the
    subscription itself: the socket's user may no longer see the channel."""
    body: dict[str, Any] = {"type": "unsubscribed", "channel": channel}
    if reason is not None:
        body["reason"] = reason
    if message is not None:
        body["message"] = message
    return body


def pong(*, ts: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "pong"}
    if ts is not None:
        message["ts"] = ts
    return message


# Not sent live: one message goes to every subscriber of a channel, owners included, and a
# worker's name (host and pid) is for those who see every job (jobs.policy), through the API.
JOB_UPDATE_WITHHELD = ("worker",)


def job_update(
    *, event_id: int, kind: str, job: dict[str, Any], created_at: str | None, batch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``batch``: a batch member's update carries its batch's aggregate (``batch_aggregate``)."""
    shown = {key: value for key, value in job.items() if key not in JOB_UPDATE_WITHHELD}
    message = {"type": "job-update", "event_id": event_id, "kind": kind, "job": shown, "created_at": created_at}
    if batch is not None:
        message["batch"] = batch
    return message


def batch_aggregate(*, batch_id: int, summary: BatchSummary, finished_at: datetime | None) -> dict[str, Any]:
    """A batch as it stands when the message is sent (``jobs.services.batch_summary``), not as it
    stood at the event: the newest one a client has is the batch's state."""
    return {
        "id": batch_id,
        "status": summary.status,
        "counts": summary.counts,
        "total": summary.total,
        "progress": summary.progress,
        "eta": _iso(summary.eta),
        "finished_at": _iso(finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_stats(*, stats: dict[str, Any]) -> dict[str, Any]:
    return {"type": "job-stats", "stats": stats}


def job_alert(*, event_id: int, alert: dict[str, Any]) -> dict[str, Any]:
    return {"type": "job-alert", "event_id": event_id, "alert": alert}


def error(*, code: str, message: str, channel: str | None = None, last_event_id: int | None = None) -> dict[str, Any]:
    """``channel``: the channel a refused or failed (un)subscribe named; ``last_event_id``: where a
    truncated replay stopped (subscribe again with ``since`` set to it)."""
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if channel is not None:
        body["channel"] = channel
    if last_event_id is not None:
        body["last_event_id"] = last_event_id
    return body


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An object with exactly these fields (the ``required`` ones always): any other is refused."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _message(type_name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return _object({"type": {"const": type_name}, **properties}, ["type", *required])


_str = {"type": "string"}
_int = {"type": "integer"}
_count = {"type": "integer", "minimum": 0}
_event_id = {"type": "integer", "minimum": 1}
_time = {"type": "string", "format": "date-time"}
_nullable_str = {"type": ["string", "null"]}
_nullable_int = {"type": ["integer", "null"]}
_nullable_time = {"type": ["string", "null"], "format": "date-time"}

# The job as ``jobs.events.job_snapshot`` builds it: every field, always present.
JOB_SCHEMA: dict[str, Any] = _object(
    {
        "id": {"type": "string", "format": "uuid"},
        "type": _str,
        "status": {"enum": list(JobStatus.values)},
        "queue": _str,
        "priority": _int,
        "progress": {"type": "number", "minimum": 0, "maximum": 100},
        "current_step": _count,
        "step_name": _str,
        "steps": {"type": "array", "items": _str},
        "processed_items": _count,
        "total_items": _nullable_int,
        "error_count": _count,
        "eta": _nullable_time,
        "attempts": _count,
        "max_attempts": _count,
        "error": _str,
        "created_at": _nullable_time,
        "started_at": _nullable_time,
        "finished_at": _nullable_time,
        "updated_at": _nullable_time,
        "user": _nullable_int,
        "batch": _nullable_int,  # the batch it is a member of
        "worker": _str,
        "cancel_requested": {"type": "boolean"},
        "pause_requested": {"type": "boolean"},
        "actions": {"type": "array", "items": {"enum": ACTION_NAMES}, "uniqueItems": True},
    },
    required=[],  # filled in below: every field named above
)
JOB_SCHEMA["required"] = list(JOB_SCHEMA["properties"])
# The job of a ``job-update``: the snapshot less what is not sent live (``JOB_UPDATE_WITHHELD``).
JOB_UPDATE_JOB_SCHEMA: dict[str, Any] = {
    **JOB_SCHEMA,
    "properties": {k: v for k, v in JOB_SCHEMA["properties"].items() if k not in JOB_UPDATE_WITHHELD},
    "required": [k for k in JOB_SCHEMA["required"] if k not in JOB_UPDATE_WITHHELD],
}

# A member's batch as ``batch_aggregate`` builds it: every field, always present.
BATCH_AGGREGATE_SCHEMA: dict[str, Any] = _object(
    {
        "id": _count,
        "status": {"enum": list(BatchStatus.ALL)},
        "counts": _object({status: _count for status in JobStatus.values}, list(JobStatus.values)),
        "total": _count,
        "progress": {"type": "number", "minimum": 0, "maximum": 100},
        "eta": _nullable_time,
        "finished_at": _nullable_time,
    },
    required=["id", "status", "counts", "total", "progress", "eta", "finished_at"],
)

# The alert as ``monitoring.alerts.alert_payload`` builds it.
ALERT_SCHEMA: dict[str, Any] = _object(
    {
        "id": _int,
        "rule": _str,
        "severity": {"enum": ["info", "warning", "critical"]},
        "message": _str,
        "job": {"type": ["string", "null"], "format": "uuid"},
        "subject": _str,
        "value": {"type": ["number", "null"]},
        "status": {"enum": list(AlertStatus.values)},
        "created_at": _time,
        "updated_at": _time,
    },
    required=[],
)
ALERT_SCHEMA["required"] = list(ALERT_SCHEMA["properties"])


# ``job-stats`` carries the body of ``GET /api/stats/``: its schema is that endpoint's serializer's.
# The schemas are built on first use (tests, docs), not when a process imports the builders:
# deriving the stats schema loads drf-spectacular's inspector.
def _stats_schema() -> dict[str, Any]:
    from jobs.api.json_schema import serializer_json_schema
    from monitoring.serializers import StatsSerializer

    schema = serializer_json_schema(StatsSerializer, "response")
    return {key: value for key, value in schema.items() if key != "$schema"}


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {
        "welcome": _message(
            "welcome",
            {
                "user": _object(
                    {"id": _int, "username": _str, "is_staff": {"type": "boolean"}}, ["id", "username", "is_staff"]
                ),
                "latest_event_id": _count,
                "channels": {"type": "array", "items": {"type": "string", "pattern": CHANNEL_PATTERN}},
            },
            ["user", "latest_event_id", "channels"],
        ),
        "subscribed": _message(
            "subscribed",
            {
                "channel": {"type": "string", "pattern": CHANNEL_PATTERN},
                "since": _nullable_int,
                "replayed": _count,
                "latest_event_id": _count,
            },
            ["channel", "since", "replayed", "latest_event_id"],
        ),
        "unsubscribed": _message(
            "unsubscribed", {"channel": _str, "reason": {"enum": list(ERROR_CODES)}, "message": _str}, ["channel"]
        ),
        # ``ts`` is the client's own ``ping`` value, echoed as it came (any JSON).
        "pong": _message("pong", {"ts": {}}, []),
        "job-update": _message(
            "job-update",
            {
                "event_id": _event_id,
                "kind": {"enum": JOB_EVENT_KINDS},
                "job": JOB_UPDATE_JOB_SCHEMA,
                "created_at": _nullable_time,
                "batch": BATCH_AGGREGATE_SCHEMA,  # a batch member's: its batch's aggregate
            },
            ["event_id", "kind", "job", "created_at"],
        ),
        "job-stats": _message("job-stats", {"stats": _stats_schema()}, ["stats"]),
        "job-alert": _message("job-alert", {"event_id": _event_id, "alert": ALERT_SCHEMA}, ["event_id", "alert"]),
        "error": _message(
            "error",
            {"code": {"enum": list(ERROR_CODES)}, "message": _str, "channel": _str, "last_event_id": _count},
            ["code", "message"],
        ),
    }


def __getattr__(name: str) -> Any:
    """``SCHEMAS`` (message type -> JSON Schema) and ``STATS_SCHEMA``, built on first use."""
    if name == "SCHEMAS":
        return _schemas()
    if name == "STATS_SCHEMA":
        return _schemas()["job-stats"]["properties"]["stats"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
