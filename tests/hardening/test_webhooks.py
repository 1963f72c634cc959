"""Alert webhooks refuse internal addresses (issue "hardening": a rule's webhook could point at
any internal address, and the monitor would POST there)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from monitoring.alerts import send_alert_webhook
from monitoring.models import Alert, AlertRule

pytestmark = pytest.mark.django_db

INTERNAL = [
    "http://127.0.0.1:6379/",
    "http://localhost:8000/admin/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "ftp://example.com/hook",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_a_rule_whose_webhook_points_inside_is_a_form_error(url: str) -> None:
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_webhook = True
    rule.webhook_url = url
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert "webhook_url" in refused.value.message_dict


@pytest.mark.parametrize("url", INTERNAL[:6])
def test_a_rule_saved_around_the_form_is_refused_when_sent(url: str) -> None:
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_webhook = True
    rule.webhook_url = url
    rule.save()
    alert = Alert.objects.create(rule=rule, severity=rule.severity, message="m", subject="s")
    assert send_alert_webhook(alert, sleep=lambda s: None).startswith("refused: ")


def test_an_allowed_network_may_be_reached(settings: Any) -> None:
    settings.JOBADMIN_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_webhook = True
    rule.webhook_url = "http://10.1.2.3/hook"
    rule.full_clean()


def test_the_send_connects_to_the_address_it_checked(monkeypatch: Any, settings: Any) -> None:
    """A name that resolves to a public address at the check and to loopback later (DNS
    rebinding) is still sent to the checked address: the name is resolved once per send."""
    from monitoring import webhooks

    answers = iter(["93.184.216.34", "127.0.0.1"])
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))],
    )
    connected: list[str] = []

    def refuse(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        connected.append(address[0])
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ConnectionRefusedError):
        webhooks.post_json("http://rebind.example/hook", b"{}", timeout=1)
    assert connected == ["93.184.216.34"]
