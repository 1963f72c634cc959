"""Websocket messages: one builder and one JSON Schema per server-to-client type.

Like zulip's ``event_types.py``: the builders are the only place a message is shaped,
and ``tests/monitoring/test_messages.py`` checks every builder's output against its
schema, so a frontend can trust the shapes documented in ``docs/websocket.md``.
Fields may be added; none may be renamed.
"""

from __future__ import annotations

from typing import Any

# --- error codes -------------------------------------------------------------------------
BAD_JSON = "bad-json"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
UNKNOWN_CHANNEL = "unknown-channel"
FORBIDDEN = "forbidden"
TOO_LARGE = "too-large"
RATE_LIMITED = "rate-limited"
REPLAY_TRUNCATED = "replay-truncated"
ERROR_CODES = (
    BAD_JSON,
    BAD_MESSAGE,
    UNKNOWN_TYPE,
    UNKNOWN_CHANNEL,
    FORBIDDEN,
    TOO_LARGE,
    RATE_LIMITED,
    REPLAY_TRUNCATED,
)

# --- close codes -------------------------------------------------------------------------
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FLOOD = 4429  # kept flooding after rate-limit errors
CLOSE_TOO_SLOW = 4408  # could not keep up even with progress conflated: resume with since

CHANNEL_PATTERN = r"^(job:[0-9a-fA-F-]{32,36}|user:[0-9]+|stats|alerts|all)$"


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


def unsubscribed(*, channel: str) -> dict[str, Any]:
    return {"type": "unsubscribed", "channel": channel}


def pong(*, ts: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "pong"}
    if ts is not None:
        message["ts"] = ts
    return message


def job_update(*, event_id: int, kind: str, job: dict[str, Any], created_at: str | None) -> dict[str, Any]:
    return {"type": "job-update", "event_id": event_id, "kind": kind, "job": job, "created_at": created_at}


def job_stats(*, stats: dict[str, Any]) -> dict[str, Any]:
    return {"type": "job-stats", "stats": stats}


def job_alert(*, event_id: int, alert: dict[str, Any]) -> dict[str, Any]:
    return {"type": "job-alert", "event_id": event_id, "alert": alert}


def error(*, code: str, message: str, channel: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if channel is not None:
        body["channel"] = channel
    body.update(extra)
    return body


def _object(type_name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": type_name}, **properties},
        "required": ["type", *required],
    }


_nullable_str = {"type": ["string", "null"]}
_nullable_int = {"type": ["integer", "null"]}

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "status": {"type": "string"},
        "progress": {"type": "number"},
        "current_step": {"type": "integer"},
        "step_name": {"type": "string"},
        "processed_items": {"type": "integer"},
        "total_items": _nullable_int,
        "error_count": {"type": "integer"},
        "eta": _nullable_str,
        "updated_at": _nullable_str,
        "user": _nullable_int,
    },
    "required": [
        "id",
        "type",
        "status",
        "progress",
        "current_step",
        "step_name",
        "processed_items",
        "total_items",
        "error_count",
        "eta",
        "updated_at",
        "user",
    ],
}

ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "rule": {"type": "string"},
        "severity": {"type": "string"},
        "message": {"type": "string"},
        "job": _nullable_str,
        "created_at": {"type": "string"},
    },
    "required": ["id", "rule", "severity", "message", "job", "created_at"],
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "welcome": _object(
        "welcome",
        {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "username": {"type": "string"},
                    "is_staff": {"type": "boolean"},
                },
                "required": ["id", "username", "is_staff"],
            },
            "latest_event_id": {"type": "integer", "minimum": 0},
            "channels": {"type": "array", "items": {"type": "string", "pattern": CHANNEL_PATTERN}},
        },
        ["user", "latest_event_id", "channels"],
    ),
    "subscribed": _object(
        "subscribed",
        {
            "channel": {"type": "string", "pattern": CHANNEL_PATTERN},
            "since": _nullable_int,
            "replayed": {"type": "integer", "minimum": 0},
            "latest_event_id": {"type": "integer", "minimum": 0},
        },
        ["channel", "since", "replayed", "latest_event_id"],
    ),
    "unsubscribed": _object("unsubscribed", {"channel": {"type": "string"}}, ["channel"]),
    "pong": _object("pong", {}, []),
    "job-update": _object(
        "job-update",
        {
            "event_id": {"type": "integer", "minimum": 1},
            "kind": {"type": "string"},
            "job": JOB_SCHEMA,
            "created_at": _nullable_str,
        },
        ["event_id", "kind", "job"],
    ),
    "job-stats": _object("job-stats", {"stats": {"type": "object"}}, ["stats"]),
    "job-alert": _object(
        "job-alert",
        {"event_id": {"type": "integer", "minimum": 1}, "alert": ALERT_SCHEMA},
        ["event_id", "alert"],
    ),
    "error": _object(
        "error",
        {"code": {"enum": list(ERROR_CODES)}, "message": {"type": "string"}, "channel": {"type": "string"}},
        ["code", "message"],
    ),
}
