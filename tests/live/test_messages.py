"""Every websocket message builder's output matches its published schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.db import transaction

from jobs import services
from jobs.events import record_event
from jobs.models import EventKind
from live import messages
from live.relay import message_for, replay_events

ALERT = {
    "id": 3,
    "rule": "failure-burst",
    "severity": "critical",
    "message": "5 failures in 1 minute",
    "job": None,
    "created_at": "2026-01-01T00:00:00+00:00",
}


class _User:
    pk = 7
    is_staff = False

    def get_username(self) -> str:
        return "ada"


def built() -> dict[str, dict[str, Any]]:
    return {
        "welcome": messages.welcome(user=_User(), latest_event_id=812, channels=["user:7"]),
        "subscribed": messages.subscribed(channel="all", since=800, replayed=12, latest_event_id=812),
        "unsubscribed": messages.unsubscribed(channel="stats"),
        "pong": messages.pong(ts=1.5),
        "job-stats": messages.job_stats(stats={"counts": {"running": 2}}),
        "job-alert": messages.job_alert(event_id=815, alert=ALERT),
        "error": messages.error(code=messages.FORBIDDEN, message="no", channel="all"),
    }


def test_every_server_message_type_has_a_schema_and_a_builder() -> None:
    assert set(messages.SCHEMAS) == {*built(), "job-update"}


@pytest.mark.parametrize("type_name", sorted(built()))
def test_builder_output_matches_its_schema(type_name: str) -> None:
    message = built()[type_name]
    assert message["type"] == type_name
    jsonschema.validate(message, messages.SCHEMAS[type_name])


@pytest.mark.django_db
def test_job_update_built_from_a_real_event_matches_its_schema(user: Any) -> None:
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    row = replay_events(group=f"job.{job.id}", after=0, limit=10)[0]
    message = message_for(row)
    assert message is not None
    jsonschema.validate(message, messages.SCHEMAS["job-update"])
    assert message["event_id"] == row["id"]
    assert message["job"]["status"] == "queued"


@pytest.mark.django_db
def test_job_alert_built_from_a_real_event_matches_its_schema() -> None:
    with transaction.atomic():
        event = record_event(kind=EventKind.ALERT, payload={"alert": ALERT})
    row = replay_events(group="jobs.alerts", after=event.id - 1, limit=10)[0]
    message = message_for(row)
    assert message is not None
    jsonschema.validate(message, messages.SCHEMAS["job-alert"])


def test_schemas_reject_a_renamed_field() -> None:
    message = built()["job-alert"]
    message["alarm"] = message.pop("alert")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(message, messages.SCHEMAS["job-alert"])


@pytest.mark.parametrize("code", messages.ERROR_CODES)
def test_every_error_code_is_allowed_by_the_schema(code: str) -> None:
    jsonschema.validate(messages.error(code=code, message="x"), messages.SCHEMAS["error"])
