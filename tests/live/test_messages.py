"""Every websocket message builder's output matches its published schema, and the schema holds.

Each server-to-client type is built twice: from its builder with fixed values, and (for
``job-update``, ``job-alert``, ``job-stats``) from the real code path that sends it. Every
schema must refuse a message with a field dropped or a field added, at the top and in
every nested object, so a builder that grows a field without its schema fails here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jsonschema
import pytest
from django.db import transaction
from drf_spectacular.renderers import OpenApiJsonRenderer
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from jobs import services
from jobs.api.settings import generate_schema
from jobs.events import job_snapshot, record_event
from jobs.models import EventKind
from live import messages
from live.relay import message_for, replay_events
from monitoring import alerts
from monitoring.models import Alert, AlertRule
from monitoring.stats import stats_summary
from tests.factories import JobFactory, UserFactory, alert_payload

ALERT = alert_payload(id=3)


class _User:
    pk = 7
    is_staff = False

    def get_username(self) -> str:
        return "ada"


def _job() -> dict[str, Any]:
    """A snapshot as ``job_snapshot`` builds it, of a row that is never saved."""
    job = JobFactory.build(user=None, user_id=7)
    return job_snapshot(job)


def built() -> dict[str, dict[str, Any]]:
    """One message of every type from its builder, every optional field present."""
    return {
        "welcome": messages.welcome(user=_User(), latest_event_id=812, channels=["user:7"]),
        "subscribed": messages.subscribed(channel="all", since=800, replayed=12, latest_event_id=812),
        "unsubscribed": messages.unsubscribed(channel="stats"),
        "pong": messages.pong(ts=1.5),
        "job-update": messages.job_update(
            event_id=812,
            kind=EventKind.PROGRESS,
            job=_job(),
            created_at="2026-01-01T00:00:00+00:00",
            batch=messages.batch_aggregate(batch_id=4, summary=_SUMMARY, finished_at=None),
        ),
        "job-stats": messages.job_stats(stats=_STATS),
        "job-alert": messages.job_alert(event_id=815, alert=dict(ALERT)),
        "error": messages.error(code=messages.REPLAY_TRUNCATED, message="no", channel="all", last_event_id=9),
    }


_STATS: dict[str, Any] = {}
_SUMMARY = services.BatchSummary(
    status="running",
    counts={"queued": 1, "running": 1, "paused": 0, "completed": 2, "failed": 0, "cancelled": 0},
    total=4,
    progress=62.5,
    eta=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
)


@pytest.fixture(scope="module", autouse=True)
def _stats_body(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """A real ``GET /api/stats/`` body (of an empty database), built once for the module."""
    with django_db_blocker.unblock():
        _STATS.update(stats_summary(range_name="1d"))
    yield
    _STATS.clear()


def _objects(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every object in a message, with its path (the message itself first)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _objects(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:1]):  # one item of a list stands for all
            yield from _objects(value, (*path, index))


def _at(message: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = message
    for step in path:
        node = node[step]
    return node


def _fails(message: dict[str, Any], type_name: str) -> bool:
    try:
        jsonschema.validate(message, messages.SCHEMAS[type_name])
    except jsonschema.ValidationError:
        return True
    return False


def test_every_server_message_type_has_a_schema_and_a_builder() -> None:
    assert set(messages.SCHEMAS) == set(built())


@pytest.mark.parametrize("type_name", sorted(messages.SCHEMAS))
def test_builder_output_matches_its_schema(type_name: str) -> None:
    message = built()[type_name]
    assert message["type"] == type_name
    jsonschema.validate(message, messages.SCHEMAS[type_name])


@pytest.mark.parametrize("type_name", sorted(messages.SCHEMAS))
def test_schema_refuses_an_extra_field_in_every_object_of_the_message(type_name: str) -> None:
    message = built()[type_name]
    paths = [path for path, obj in _objects(message) if not (type_name == "pong" and path == ("ts",))]
    assert paths
    for path in paths:
        broken = copy.deepcopy(message)
        _at(broken, path)["surprise"] = 1
        assert _fails(broken, type_name), f"{type_name}: an extra field at {path or 'the top'} passed"


@pytest.mark.parametrize("type_name", sorted(messages.SCHEMAS))
def test_schema_refuses_a_message_without_any_one_of_its_fields(type_name: str) -> None:
    """Every field the builder always sends is required (optional ones: ``pong.ts``, ``error.channel``...)."""
    optional = {("pong", ("ts",)), ("error", ("channel",)), ("error", ("last_event_id",)), ("job-update", ("batch",))}
    message = built()[type_name]
    checked = 0
    for path, obj in _objects(message):
        for key in obj:
            if (type_name, (*path, key)) in optional:
                continue
            broken = copy.deepcopy(message)
            del _at(broken, path)[key]
            assert _fails(broken, type_name), f"{type_name}: dropping {(*path, key)} passed"
            checked += 1
    assert checked


def test_the_job_schema_names_every_field_of_the_snapshot() -> None:
    assert list(messages.JOB_SCHEMA["properties"]) == list(_job())
    assert messages.JOB_SCHEMA["required"] == list(_job())


def test_job_stats_refuses_a_body_that_is_not_the_stats_body() -> None:
    """The old schema was ``{"type": "object"}``: this body passed it, though it is no stats body."""
    assert _fails(messages.job_stats(stats={"counts": {"running": 2}}), "job-stats")


@pytest.mark.django_db
def test_job_update_built_from_a_real_event_matches_its_schema() -> None:
    job = services.job_enqueue(job_type="demo", params={}, user=UserFactory.create())
    row = replay_events(group=f"job.{job.id}", after=0, limit=10)[0]
    message = message_for(row)
    assert message is not None
    jsonschema.validate(message, messages.SCHEMAS["job-update"])
    assert message["event_id"] == row["id"]
    assert message["job"]["status"] == "queued"


@pytest.mark.django_db
def test_a_batch_members_job_update_carries_its_batchs_aggregate_matching_the_schema() -> None:
    member = {"type": "demo", "params": {"items": 2, "delay_ms": 0}}
    batch = services.batch_create(name="two", members=[member, member], user=UserFactory.create())
    first = batch.members.order_by("created_at", "id")[0]
    services.job_cancel(job=first)
    rows = replay_events(group=f"batch.{batch.pk}", after=0, limit=10)
    message = message_for(rows[-1])
    assert message is not None
    jsonschema.validate(message, messages.SCHEMAS["job-update"])
    assert message["job"]["status"] == "cancelled"
    assert message["batch"]["id"] == batch.pk
    assert message["batch"]["status"] == "running"
    assert message["batch"]["counts"]["cancelled"] == 1
    assert message["batch"]["counts"]["queued"] == 1
    assert message["batch"]["total"] == 2
    assert message["batch"]["progress"] == 50


@pytest.mark.django_db
def test_job_alert_built_from_a_real_alert_matches_its_schema() -> None:
    rule = AlertRule.objects.create(name="burst", metric="failures", comparison="gt", threshold=2)
    alert = Alert.objects.create(rule=rule, severity="critical", message="3 failures", value=3)
    with transaction.atomic():
        event = record_event(kind=EventKind.ALERT, payload={"alert": alerts.alert_payload(alert)})
    row = replay_events(group="jobs.alerts", after=event.id - 1, limit=10)[0]
    message = message_for(row)
    assert message is not None
    jsonschema.validate(message, messages.SCHEMAS["job-alert"])


@pytest.mark.django_db
def test_job_stats_of_a_busy_database_matches_its_schema() -> None:
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        JobFactory.create(status=status)
    jsonschema.validate(messages.job_stats(stats=stats_summary(range_name="all")), messages.SCHEMAS["job-stats"])


@pytest.mark.parametrize("code", messages.ERROR_CODES)
def test_every_error_code_is_allowed_by_the_schema(code: str) -> None:
    jsonschema.validate(messages.error(code=code, message="x"), messages.SCHEMAS["error"])


@cache
def _long_poll_event() -> Any:
    """The served document's ``LiveEvent`` (an event of ``GET /api/events/``) as an OpenAPI 3.0 validator."""
    document = json.loads(OpenApiJsonRenderer().render(generate_schema()))
    registry = Registry().with_resource("urn:api", Resource.from_contents(document, default_specification=DRAFT4))
    return OAS30Validator({"$ref": "urn:api#/components/schemas/LiveEvent"}, registry=registry)


@pytest.mark.parametrize("type_name", ["job-update", "job-alert"])
def test_the_api_documents_a_long_polled_message_as_its_schema_does(type_name: str) -> None:
    """The OpenAPI document takes the long-poll's messages from ``messages.SCHEMAS`` (``live.longpoll``):
    it accepts the builder's message, with its nullable fields null too, and refuses a field added anywhere."""
    message = built()[type_name]
    assert list(_long_poll_event().iter_errors(message)) == []
    nulled = copy.deepcopy(message)
    if type_name == "job-update":
        nulled["created_at"] = nulled["job"]["eta"] = nulled["batch"]["finished_at"] = None
    else:
        nulled["alert"]["job"] = nulled["alert"]["value"] = None
    jsonschema.validate(nulled, messages.SCHEMAS[type_name])
    assert list(_long_poll_event().iter_errors(nulled)) == []
    for path, _node in _objects(message):
        extra = copy.deepcopy(message)
        _at(extra, path)["unexpected"] = 1
        assert list(_long_poll_event().iter_errors(extra)) != [], path
