"""Alert rules: every built-in rule fires, deduplicates, resolves itself and notifies on every channel."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail

from jobs.models import EventKind, Job, JobEvent
from monitoring.alerts import alert_notify, alerts_evaluate, send_alert_webhook
from monitoring.models import Alert, AlertRule, AlertStatus, MetricSample
from tests.monitoring.conftest import NOW, ago, make_job

pytestmark = pytest.mark.django_db


def sample(at: datetime, **values: float) -> MetricSample:
    fields: dict[str, Any] = {
        "cpu_percent": 10.0,
        "memory_percent": 20.0,
        "disk_percent": 30.0,
        "load_1": 0.1,
        "load_5": 0.1,
        "load_15": 0.1,
        **values,
    }
    return MetricSample.objects.create(sampled_at=at, **fields)


# rule name -> (make the condition true, then return the time to evaluate at that clears it)
def _failure_rate() -> Callable[[], datetime]:
    make_job(status="failed", created=ago(minutes=3), started=ago(minutes=2), finished=ago(minutes=1))
    make_job(status="completed", created=ago(minutes=3), started=ago(minutes=2), finished=ago(minutes=1))
    return lambda: NOW + timedelta(minutes=20)


def _failure_burst() -> Callable[[], datetime]:
    for minutes in (1, 2, 3):
        make_job(status="failed", created=ago(minutes=5), started=ago(minutes=4), finished=ago(minutes=minutes))
    return lambda: NOW + timedelta(minutes=10)


def _stalled() -> Callable[[], datetime]:
    job = make_job(status="running", created=ago(minutes=20), started=ago(minutes=15))
    Job.objects.filter(pk=job.pk).update(heartbeat_at=ago(minutes=10))

    def clear() -> datetime:
        Job.objects.filter(pk=job.pk).update(status="failed", finished_at=NOW)
        return NOW + timedelta(minutes=1)

    return clear


def _long_running() -> Callable[[], datetime]:
    job = make_job(status="running", created=ago(minutes=32), started=ago(minutes=31))
    Job.objects.filter(pk=job.pk).update(heartbeat_at=NOW)

    def clear() -> datetime:
        Job.objects.filter(pk=job.pk).update(status="completed", finished_at=NOW)
        return NOW

    return clear


def _queue_depth() -> Callable[[], datetime]:
    Job.objects.bulk_create(Job(type="demo", queue="batch", created_at=ago(minutes=1)) for _ in range(51))

    def clear() -> datetime:
        Job.objects.filter(pk=Job.objects.filter(queue="batch").values("pk")[:1]).delete()
        return NOW

    return clear


def _sampled(field: str, high: float, low: float, window: int) -> Callable[[], Callable[[], datetime]]:
    def setup() -> Callable[[], datetime]:
        sample(ago(seconds=10), **{field: high})

        def clear() -> datetime:
            later = NOW + timedelta(seconds=window + 30)
            sample(later - timedelta(seconds=1), **{field: low})
            return later

        return clear

    return setup


BUILTIN_CASES: dict[str, tuple[Callable[[], Callable[[], datetime]], str, str]] = {
    "failure-rate": (_failure_rate, "", "warning"),
    "failure-burst": (_failure_burst, "", "critical"),
    "stalled-jobs": (_stalled, "job:", "critical"),
    "long-running": (_long_running, "job:", "warning"),
    "queue-depth": (_queue_depth, "queue:batch", "warning"),
    "cpu-high": (_sampled("cpu_percent", 95, 10, 300), "", "warning"),
    "memory-high": (_sampled("memory_percent", 95, 10, 300), "", "critical"),
    "event-lag": (_sampled("event_lag_ms", 800, 20, 60), "", "warning"),
}


def test_every_builtin_rule_of_the_design_is_installed() -> None:
    assert set(AlertRule.objects.filter(builtin=True).values_list("name", flat=True)) == set(BUILTIN_CASES)


def _alert_events() -> list[dict[str, Any]]:
    return [e.payload["alert"] for e in JobEvent.objects.filter(kind=EventKind.ALERT).order_by("id")]


@pytest.mark.parametrize("name", list(BUILTIN_CASES))
def test_builtin_rule_fires_once_then_resolves_when_the_condition_clears(name: str) -> None:
    setup, subject, severity = BUILTIN_CASES[name]
    rule = AlertRule.objects.get(name=name)
    clear = setup()

    first = alerts_evaluate(now=NOW, rules=[rule])
    second = alerts_evaluate(now=NOW + timedelta(seconds=1), rules=[rule])

    assert len(first.opened) == 1
    alert = first.opened[0]
    assert alert.severity == severity
    assert alert.subject.startswith(subject) if subject else alert.subject == ""
    assert second.opened == []  # deduplicated: still the one open alert
    assert Alert.objects.filter(rule=rule, status=AlertStatus.OPEN).count() == 1
    assert [e["status"] for e in _alert_events()] == ["open"]  # the job-alert was written once

    when = clear()
    third = alerts_evaluate(now=when, rules=[rule])

    assert [a.pk for a in third.resolved] == [alert.pk]
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolved_by is None
    events = _alert_events()
    assert [e["status"] for e in events] == ["open", "resolved"]
    assert events[0] == {**events[0], "id": alert.pk, "rule": name, "severity": severity}


def test_alert_event_carries_the_job_of_a_job_scoped_rule() -> None:
    _long_running()
    rule = AlertRule.objects.get(name="long-running")

    opened = alerts_evaluate(now=NOW, rules=[rule]).opened

    job = Job.objects.get()
    assert opened[0].job_id == job.pk
    assert _alert_events()[0]["job"] == str(job.pk)


def test_a_rule_resolved_by_staff_fires_again_while_its_condition_holds(staff_user: Any) -> None:
    from monitoring.alerts import alert_resolve

    _failure_burst()
    rule = AlertRule.objects.get(name="failure-burst")
    first = alerts_evaluate(now=NOW, rules=[rule]).opened[0]
    alert_resolve(alert=first, actor=staff_user)

    again = alerts_evaluate(now=NOW + timedelta(seconds=5), rules=[rule]).opened

    assert len(again) == 1
    assert again[0].pk != first.pk


def test_disabled_rules_are_not_evaluated() -> None:
    _failure_burst()
    AlertRule.objects.filter(name="failure-burst").update(enabled=False)

    result = alerts_evaluate(now=NOW)

    assert not any(a.rule.name == "failure-burst" for a in result.opened)


# --- Notification channels ---------------------------------------------------------------------


class Receiver:
    """A real local HTTP server that records webhook bodies; answers with the scripted codes."""

    def __init__(self, codes: list[int] | None = None, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.codes = list(codes or [])
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                time.sleep(receiver.delay)
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Callable[..., Receiver]]:
    # The receivers listen on loopback, which a webhook may reach only where allowed.
    settings.JOBADMIN_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_new_alert_notifies_by_websocket_event_email_and_webhook(
    receiver: Callable[..., Receiver], django_capture_on_commit_callbacks: Any
) -> None:
    hook = receiver()
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_email = True
    rule.email_recipients = "ops@example.com, oncall@example.com"
    rule.notify_webhook = True
    rule.webhook_url = hook.url
    rule.save()
    _failure_burst()

    with django_capture_on_commit_callbacks(execute=True):
        alert = alerts_evaluate(now=NOW, rules=[rule]).opened[0]
    with django_capture_on_commit_callbacks(execute=True):
        alerts_evaluate(now=NOW + timedelta(seconds=5), rules=[rule])  # deduplicated: no second notice

    assert [e["id"] for e in _alert_events()] == [alert.pk]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "oncall@example.com"]
    assert "failure-burst" in mail.outbox[0].subject
    assert "CRITICAL" in mail.outbox[0].subject
    assert len(hook.bodies) == 1
    assert hook.bodies[0]["type"] == "job-alert"
    assert hook.bodies[0]["alert"] == {**hook.bodies[0]["alert"], "id": alert.pk, "rule": "failure-burst"}
    alert.refresh_from_db()
    assert alert.notifications["email"] == "sent"
    assert alert.notifications["webhook"].startswith("ok: HTTP 200")


def test_webhook_retries_server_errors_until_it_succeeds(receiver: Callable[..., Receiver], settings: Any) -> None:
    settings.JOBADMIN_WEBHOOK_RETRIES = 3
    hook = receiver(codes=[500, 503])
    alert = _alert_with_webhook(hook.url)

    outcome = send_alert_webhook(alert, sleep=lambda s: None)

    assert outcome == "ok: HTTP 200 (attempt 3)"
    assert len(hook.bodies) == 3


def test_webhook_gives_up_after_its_retries_on_a_slow_receiver(
    receiver: Callable[..., Receiver], settings: Any
) -> None:
    settings.JOBADMIN_WEBHOOK_RETRIES = 2
    settings.JOBADMIN_WEBHOOK_TIMEOUT = 0.2
    hook = receiver(delay=1.0)
    alert = _alert_with_webhook(hook.url)

    started = time.monotonic()
    outcome = send_alert_webhook(alert, sleep=lambda s: None)

    assert outcome.startswith("failed:")
    assert "after 2 attempts" in outcome
    assert time.monotonic() - started < 2.0


def test_a_client_error_is_not_retried(receiver: Callable[..., Receiver]) -> None:
    hook = receiver(codes=[400])
    alert = _alert_with_webhook(hook.url)

    assert send_alert_webhook(alert, sleep=lambda s: None) == "failed: HTTP 400 (attempt 1)"
    assert len(hook.bodies) == 1


def test_notify_never_raises_when_the_webhook_is_unreachable(settings: Any) -> None:
    settings.JOBADMIN_WEBHOOK_RETRIES = 2
    settings.JOBADMIN_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1"]
    alert = _alert_with_webhook("http://127.0.0.1:9/unreachable")

    outcome = alert_notify(alert)

    assert outcome["webhook"].startswith("failed:")
    alert.refresh_from_db()
    assert alert.notifications["webhook"].startswith("failed:")


def _alert_with_webhook(url: str) -> Alert:
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_webhook = True
    rule.webhook_url = url
    rule.save()
    return Alert.objects.create(rule=rule, severity="critical", message="test", created_at=NOW, updated_at=NOW)


# --- API ---------------------------------------------------------------------------------------


def test_staff_acknowledge_then_resolve_through_the_api(api_client: Any, staff_user: Any) -> None:
    _failure_burst()
    alert = alerts_evaluate(now=NOW, rules=[AlertRule.objects.get(name="failure-burst")]).opened[0]
    api_client.force_authenticate(staff_user)

    listed = api_client.get("/api/alerts/", {"status": "open"})
    acked = api_client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    acked_again = api_client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    resolved = api_client.post(f"/api/alerts/{alert.pk}/resolve/")
    resolved_again = api_client.post(f"/api/alerts/{alert.pk}/resolve/")

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["results"]] == [alert.pk]
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == staff_user.username
    assert acked_again.status_code == 409
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    assert resolved_again.status_code == 409
    assert [e["status"] for e in _alert_events()] == ["open", "acknowledged", "resolved"]
    assert api_client.get("/api/alerts/", {"status": "open"}).json()["results"] == []


def test_alerts_api_is_for_staff_only(api_client: Any, user: Any) -> None:
    assert api_client.get("/api/alerts/").status_code in (401, 403)
    api_client.force_authenticate(user)
    assert api_client.get("/api/alerts/").status_code == 403
    assert api_client.post("/api/alerts/1/acknowledge/").status_code == 403


def test_acknowledging_an_unknown_alert_is_404(api_client: Any, staff_user: Any) -> None:
    api_client.force_authenticate(staff_user)
    assert api_client.post("/api/alerts/999999/acknowledge/").status_code == 404


def test_disabling_a_rule_resolves_its_open_alerts() -> None:
    from monitoring.alerts import alerts_disabled_resolve

    _failure_burst()
    rule = AlertRule.objects.get(name="failure-burst")
    alert = alerts_evaluate(now=NOW, rules=[rule]).opened[0]
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)

    assert alerts_disabled_resolve(now=NOW) == 1
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


# --- Slack -------------------------------------------------------------------------------------


def test_a_new_alert_is_posted_to_slack_in_slacks_message_format(
    receiver: Callable[..., Receiver], django_capture_on_commit_callbacks: Any
) -> None:
    slack = receiver()
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_slack = True
    rule.slack_webhook_url = slack.url
    rule.full_clean()
    rule.save()
    _failure_burst()

    with django_capture_on_commit_callbacks(execute=True):
        alert = alerts_evaluate(now=NOW, rules=[rule]).opened[0]

    assert len(slack.bodies) == 1
    body = slack.bodies[0]
    assert body["text"].startswith("CRITICAL: failure-burst")
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": ":red_circle: CRITICAL: failure-burst"}
    assert body["blocks"][1]["text"]["text"] == alert.message
    assert {"type": "mrkdwn", "text": "*Severity*\ncritical"} in body["blocks"][1]["fields"]
    # Slack's date token: each reader sees the time in their own zone; the ISO text is the fallback.
    context = body["blocks"][2]["elements"][0]["text"]
    assert f"<!date^{int(alert.created_at.timestamp())}^" in context
    assert alert.created_at.isoformat() in context
    alert.refresh_from_db()
    assert alert.notifications["slack"].startswith("ok: HTTP 200")


def test_a_slack_channel_needs_its_url_and_may_not_point_inside(settings: Any) -> None:
    from django.core.exceptions import ValidationError

    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_slack = True
    with pytest.raises(ValidationError, match="needs its URL"):
        rule.full_clean()
    rule.slack_webhook_url = "http://127.0.0.1:8080/services/T0/B0/x"
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert "internal" in str(refused.value.message_dict["slack_webhook_url"])


def test_slack_answering_a_client_error_is_recorded_and_not_retried(receiver: Callable[..., Receiver]) -> None:
    slack = receiver(codes=[404])
    rule = AlertRule.objects.get(name="failure-burst")
    rule.notify_slack = True
    rule.slack_webhook_url = slack.url
    rule.save()
    alert = Alert.objects.create(rule=rule, severity="warning", message="m", created_at=NOW, updated_at=NOW)

    outcome = alert_notify(alert)

    assert outcome == {"slack": "failed: HTTP 404 (attempt 1)"}
    assert len(slack.bodies) == 1
