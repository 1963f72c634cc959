"""``/api/alert-rules/``: read by ``monitoring.view_alertrule``, written by ``monitoring.change_alertrule``,
strict input, and the same validation as the admin's form (the webhook's SSRF fence)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs import policy
from monitoring.builtin_rules import ensure_builtin_rules
from monitoring.models import AlertRule
from tests.conftest import grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIST = "/api/alert-rules/"
NEW = {"name": "deep-default", "metric": "queue_depth", "comparison": "gt", "threshold": 20, "window_seconds": 60}


@pytest.fixture
def writer() -> APIClient:
    client = APIClient()
    client.force_authenticate(grant(UserFactory(is_staff=True), policy.CHANGE_ALERTRULE))
    return client


@pytest.fixture
def reader() -> APIClient:
    client = APIClient()
    client.force_authenticate(grant(UserFactory(is_staff=True), policy.VIEW_ALERTRULE))
    return client


def test_a_writer_adds_reads_changes_and_deletes_a_rule(writer: APIClient) -> None:
    created = writer.post(LIST, NEW, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["builtin"], body["channels"]) == ("deep-default", False, ["websocket"])
    url = f"{LIST}{body['id']}/"
    assert writer.get(url).json()["threshold"] == 20
    changed = writer.patch(url, {"threshold": 35.5, "severity": "critical"}, format="json")
    assert changed.status_code == 200, changed.content
    rule = AlertRule.objects.get(pk=body["id"])
    assert (rule.threshold, rule.severity, rule.metric) == (35.5, "critical", "queue_depth")
    assert writer.delete(url).status_code == 204
    assert not AlertRule.objects.filter(pk=body["id"]).exists()
    assert writer.get(url).status_code == 404


def test_a_reader_sees_the_rules_but_may_not_write(reader: APIClient) -> None:
    ensure_builtin_rules(AlertRule)
    listed = reader.get(LIST)
    assert listed.status_code == 200
    assert "failure-burst" in {r["name"] for r in listed.json()["results"]}
    rule = AlertRule.objects.get(name="failure-burst")
    refused = reader.patch(f"{LIST}{rule.pk}/", {"threshold": 99}, format="json")
    assert refused.status_code == 403
    assert "monitoring.change_alertrule" in refused.json()["detail"]
    assert reader.post(LIST, NEW, format="json").status_code == 403
    assert reader.delete(f"{LIST}{rule.pk}/").status_code == 403
    assert AlertRule.objects.get(pk=rule.pk).threshold == rule.threshold


def test_staff_without_the_permission_are_refused_the_list() -> None:
    client = APIClient()
    client.force_authenticate(UserFactory.create(is_staff=True))
    response = client.get(LIST)
    assert response.status_code == 403
    assert "monitoring.view_alertrule" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "colour": "red"}, "colour"),  # an unknown field
        ({**NEW, "builtin": True}, "builtin"),  # read-only: not an input field
        ({**NEW, "metric": "nope"}, "metric"),
        ({**NEW, "threshold": "high"}, "threshold"),
        ({**NEW, "window_seconds": -5}, "window_seconds"),
        ({k: v for k, v in NEW.items() if k != "threshold"}, "threshold"),
        ({**NEW, "name": "failure-burst"}, "name"),  # taken
        ({**NEW, "notify_webhook": True}, "webhook_url"),  # a webhook rule needs its URL
        ({**NEW, "notify_webhook": True, "webhook_url": "http://127.0.0.1:6379/"}, "webhook_url"),
        ({**NEW, "notify_webhook": True, "webhook_url": "http://169.254.169.254/latest/"}, "webhook_url"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_saves_nothing(writer: APIClient, body: Any, field: str) -> None:
    ensure_builtin_rules(AlertRule)
    before = AlertRule.objects.count()
    response = writer.post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert AlertRule.objects.count() == before


def test_a_patch_to_an_internal_webhook_is_refused_and_changes_nothing(writer: APIClient) -> None:
    ensure_builtin_rules(AlertRule)
    rule = AlertRule.objects.get(name="failure-burst")
    url = f"{LIST}{rule.pk}/"
    inside = {"threshold": 7, "notify_webhook": True, "webhook_url": "http://10.0.0.5/"}
    response = writer.patch(url, inside, format="json")
    assert response.status_code == 400
    assert "webhook_url" in response.json()
    fresh = AlertRule.objects.get(pk=rule.pk)
    assert (fresh.threshold, fresh.notify_webhook, fresh.webhook_url) == (rule.threshold, False, "")
    assert writer.patch(url, {"id": 5}, format="json").status_code == 400  # not an input field
    assert writer.put(url, NEW, format="json").status_code == 405  # PATCH only
    assert writer.get(url, {"expand": "1"}).status_code == 400  # an unknown query parameter


def test_a_global_webhook_is_accepted(writer: APIClient) -> None:
    body = {**NEW, "notify_webhook": True, "webhook_url": "https://93.184.216.34/hook"}
    response = writer.post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["channels"] == ["websocket", "webhook"]
