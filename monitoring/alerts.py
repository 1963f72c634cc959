"""Alert rules: evaluation, the alert lifecycle, and notification.

Lifecycle (one open alert per rule and subject, enforced by a partial unique constraint)::

    (condition true, no open alert)  ⇒ open         a new alert; notified on the rule's channels
    open                             → acknowledged by staff (still open: it may resolve itself)
    open | acknowledged              ⇒ resolved     when the condition clears (resolved_by is empty)
    open | acknowledged              → resolved     by staff

A rule whose condition still holds after staff resolved its alert fires again at the next
evaluation, as a new alert. Each state change writes an ``alert`` event in the same
transaction (when the rule notifies by websocket): the relay publishes it as ``job-alert``
to the ``jobs.alerts`` group. E-mail and webhook run after commit, outside the transaction;
the monitor hands them to a small thread pool so a slow webhook never holds up the loop.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from jobs import counters
from jobs.events import record_event
from jobs.exceptions import TransitionNotAllowed
from jobs.models import EventKind, JobStatus
from jobs.selectors import (
    job_active_count,
    jobs_active_started,
    jobs_finished_count,
    jobs_stalled_between,
    stalled_jobs_queryset,
)
from monitoring import metrics, webhooks
from monitoring.models import OPEN_STATUSES, Alert, AlertRule, AlertStatus, Comparison, Metric

logger = logging.getLogger(__name__)

Notifier = Callable[[Alert], None]


@dataclass(frozen=True)
class Finding:
    """The metric's value for one subject ("" = the whole system)."""

    subject: str
    value: float
    job_id: Any = None
    label: str = ""


def compare(value: float, comparison: str, threshold: float) -> bool:
    return {
        Comparison.GT: value > threshold,
        Comparison.GTE: value >= threshold,
        Comparison.LT: value < threshold,
        Comparison.LTE: value <= threshold,
    }[Comparison(comparison)]


def _until(now: datetime) -> datetime:
    return now + timedelta(microseconds=1)


def measure(rule: AlertRule, now: datetime) -> list[Finding]:
    """The rule's metric now, one finding per subject (whether or not it breaches)."""
    since = now - timedelta(seconds=rule.window_seconds)
    metric = rule.metric
    if metric == Metric.FAILURE_RATE:
        rate = metrics.failure_rate(since=since, until=_until(now))
        return [] if rate is None else [Finding("", rate)]
    if metric == Metric.FAILURES:
        failed = jobs_finished_count(since=since, until=_until(now), status=JobStatus.FAILED)
        return [Finding("", float(failed))]
    if metric == Metric.STALLED_JOBS:
        settled = jobs_stalled_between(since=since, until=_until(now))
        found: dict[str, Finding] = {}
        for job_id in [*settled, *stalled_jobs_queryset(now).order_by().values_list("id", flat=True)]:
            found[f"job:{job_id}"] = Finding(f"job:{job_id}", 1.0, job_id)
        return list(found.values())
    if metric == Metric.LONG_RUNNING:
        return [
            Finding(f"job:{job_id}", (now - started).total_seconds(), job_id, job_type)
            for job_id, job_type, started in jobs_active_started()
        ]
    if metric == Metric.QUEUE_DEPTH:
        return [Finding(f"queue:{name}", float(n)) for name, n in metrics.queue_depth().items()]
    if metric == Metric.RUNNING_JOBS:
        return [Finding("", float(job_active_count()))]
    if metric in (Metric.CPU_PERCENT, Metric.MEMORY_PERCENT, Metric.DISK_PERCENT, Metric.EVENT_LAG_MS):
        how = "max" if metric == Metric.EVENT_LAG_MS else "avg"
        if rule.window_seconds and metric != Metric.DISK_PERCENT:
            value = metrics.metrics_window_value(field=metric, since=since, until=_until(now), how=how)
        else:
            sample = metrics.latest_sample()
            value = getattr(sample, metric) if sample is not None else None
        return [] if value is None else [Finding("", float(value))]
    raise ValueError(f"unknown metric {metric!r}")


def _message(rule: AlertRule, finding: Finding) -> str:
    where = f" ({finding.label or finding.subject})" if finding.subject else ""
    return (
        f"{rule.description or rule.name}{where}: {rule.get_metric_display()} is {finding.value:g}, "
        f"threshold {rule.get_comparison_display()} {rule.threshold:g}"
    )[:500]


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The ``alert`` object of a ``job-alert`` message (and of the webhook body)."""
    return {
        "id": alert.pk,
        "rule": alert.rule.name,
        "severity": alert.severity,
        "message": alert.message,
        "job": str(alert.job_id) if alert.job_id else None,
        "subject": alert.subject,
        "value": alert.value,
        "status": alert.status,
        "created_at": alert.created_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
    }


def _record(alert: Alert, actor: Any = None) -> None:
    if alert.rule.notify_websocket:
        actor_id = getattr(actor, "pk", None)
        record_event(kind=EventKind.ALERT, payload={"alert": alert_payload(alert)}, actor_id=actor_id)


@dataclass
class Evaluation:
    opened: list[Alert]
    resolved: list[Alert]
    still_open: int


def alerts_evaluate(
    *, now: datetime | None = None, notifier: Notifier | None = None, rules: Iterable[AlertRule] | None = None
) -> Evaluation:
    """Evaluate every enabled rule: open new alerts, refresh open ones, resolve cleared ones.

    ``notifier`` sends e-mail and webhook for each new alert after its transaction commits
    (default: ``alert_notify`` inline). A rule whose metric cannot be measured is skipped and
    logged; it never stops the others.
    """
    now = now or timezone.now()
    notify = notifier or alert_notify
    result = Evaluation(opened=[], resolved=[], still_open=0)
    for rule in rules if rules is not None else AlertRule.objects.filter(enabled=True):
        try:
            findings = measure(rule, now)
        except Exception:
            logger.exception("alert rule %s could not be measured", rule.name)
            continue
        breaching = {f.subject: f for f in findings if compare(f.value, rule.comparison, rule.threshold)}
        with transaction.atomic():
            open_alerts = {
                a.subject: a for a in Alert.objects.select_for_update().filter(rule=rule, status__in=OPEN_STATUSES)
            }
            for subject, alert in open_alerts.items():
                if subject not in breaching:
                    alert.status = AlertStatus.RESOLVED
                    alert.resolved_at = alert.updated_at = now
                    alert.save(update_fields=["status", "resolved_at", "updated_at"])
                    _record(alert)
                    result.resolved.append(alert)
                else:
                    # Still firing: nothing to write (``value`` stays the one it fired with), so an
                    # idle loop with many open alerts does not rewrite them every few seconds.
                    result.still_open += 1
            for subject, finding in breaching.items():
                if subject in open_alerts:
                    continue
                alert = Alert.objects.create(
                    rule=rule,
                    subject=subject,
                    job_id=finding.job_id,
                    severity=rule.severity,
                    message=_message(rule, finding),
                    value=finding.value,
                    created_at=now,
                    updated_at=now,
                )
                _record(alert)
                counters.counter_add(name=counters.ALERT_FIRED, label=rule.name)
                result.opened.append(alert)
                if rule.notify_email or rule.notify_webhook or rule.notify_slack:
                    transaction.on_commit(lambda alert=alert: notify(alert))  # type: ignore[misc]
    return result


def alerts_disabled_resolve(*, now: datetime | None = None) -> int:
    """Open alerts of rules that were disabled since are resolved: nothing watches them any more."""
    now = now or timezone.now()
    count = 0
    for alert in Alert.objects.filter(status__in=OPEN_STATUSES, rule__enabled=False).select_related("rule"):
        with transaction.atomic():
            alert.status = AlertStatus.RESOLVED
            alert.resolved_at = alert.updated_at = now
            alert.save(update_fields=["status", "resolved_at", "updated_at"])
            _record(alert)
            count += 1
    return count


# --- Staff actions ------------------------------------------------------------------------------


def alert_acknowledge(*, alert: Alert, actor: Any) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("rule").get(pk=alert.pk)
        if alert.status != AlertStatus.OPEN:
            raise TransitionNotAllowed(
                action="acknowledge",
                status=alert.status,
                message=f"Only an open alert can be acknowledged; this one is {alert.status}.",
            )
        now = timezone.now()
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = alert.updated_at = now
        alert.acknowledged_by = actor
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "updated_at"])
        _record(alert, actor)
    return alert


def alert_resolve(*, alert: Alert, actor: Any) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("rule").get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise TransitionNotAllowed(action="resolve", status=alert.status, message="The alert is already resolved.")
        now = timezone.now()
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = alert.updated_at = now
        alert.resolved_by = actor
        alert.save(update_fields=["status", "resolved_at", "resolved_by", "updated_at"])
        _record(alert, actor)
    return alert


# --- Notification -------------------------------------------------------------------------------


def _recipients(rule: AlertRule) -> list[str]:
    listed = [r.strip() for r in rule.email_recipients.split(",") if r.strip()]
    return listed or [email for _, email in settings.ADMINS]


def send_alert_email(alert: Alert) -> str:
    recipients = _recipients(alert.rule)
    if not recipients:
        return "skipped: no recipients"
    subject = f"[JobAdmin {alert.severity.upper()}] {alert.rule.name}"
    body = f"{alert.message}\n\nRaised at {alert.created_at.isoformat()}.\nAlert #{alert.pk}, rule {alert.rule.name}."
    send_mail(subject, body, settings.ALERT_EMAIL_FROM, recipients, fail_silently=False)
    return "sent"


def send_alert_webhook(alert: Alert, *, sleep: Callable[[float], None] = time.sleep) -> str:
    """POST the alert as JSON (``{"type": "job-alert", "alert": ...}``) to the rule's webhook."""
    body = json.dumps({"type": "job-alert", "alert": alert_payload(alert)}).encode()
    return _post(alert.rule.webhook_url, body, sleep=sleep)


SLACK_MARKS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def slack_message(alert: Alert) -> dict[str, Any]:
    """The alert in Slack's own format (Block Kit, with ``text`` as the notification's fallback).
    The time is Slack's date token: each reader sees it in their own time zone."""
    raised = int(alert.created_at.timestamp())
    severity = str(alert.severity)
    title = f"{severity.upper()}: {alert.rule.name}"
    when = f"<!date^{raised}^{{date_short_pretty}} {{time_secs}}|{alert.created_at.isoformat()}>"
    context = f"JobAdmin alert #{alert.pk}, raised {when}"
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{severity}"},
        {"type": "mrkdwn", "text": f"*Rule*\n{alert.rule.name}"},
    ]
    if alert.subject:
        fields.append({"type": "mrkdwn", "text": f"*Subject*\n{alert.subject}"})
    return {
        "text": f"{title}: {alert.message}",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"{SLACK_MARKS.get(severity, '')} {title}".strip()},
            },
            {"type": "section", "text": {"type": "plain_text", "text": alert.message or title}, "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def send_alert_slack(alert: Alert, *, sleep: Callable[[float], None] = time.sleep) -> str:
    """Post the alert to the rule's Slack incoming webhook, in Slack's message format."""
    return _post(alert.rule.slack_webhook_url, json.dumps(slack_message(alert)).encode(), sleep=sleep)


def _post(url: str, body: bytes, *, sleep: Callable[[float], None]) -> str:
    """POST ``body``; up to ``JOBADMIN_WEBHOOK_RETRIES`` attempts, each with a timeout.

    A 2xx answer is success; a connection error, a timeout or a 5xx is retried with a doubling
    pause; a 4xx is final (the receiver refused the payload).
    """
    if not url:
        return "skipped: no URL"
    attempts = max(1, settings.JOBADMIN_WEBHOOK_RETRIES)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            status = webhooks.post_json(url, body, timeout=settings.JOBADMIN_WEBHOOK_TIMEOUT)
        except webhooks.WebhookRefused as exc:
            return f"refused: {exc}"
        except (http.client.HTTPException, OSError) as exc:
            last = repr(exc)
        else:
            if 200 <= status < 300:
                return f"ok: HTTP {status} (attempt {attempt})"
            last = f"HTTP {status}"
            if status < 500:
                return f"failed: {last} (attempt {attempt})"
        if attempt < attempts:
            sleep(0.2 * 2 ** (attempt - 1))
    return f"failed: {last} after {attempts} attempts"


def alert_notify(alert: Alert) -> dict[str, str]:
    """E-mail, webhook and Slack for one alert, per the rule's channels; the outcome is kept on the alert.

    Never raises: a failing channel is logged and recorded.
    """
    outcomes: dict[str, str] = {}
    rule = alert.rule
    for channel, enabled, send in (
        ("email", rule.notify_email, send_alert_email),
        ("webhook", rule.notify_webhook, send_alert_webhook),
        ("slack", rule.notify_slack, send_alert_slack),
    ):
        if not enabled:
            continue
        try:
            outcomes[channel] = send(alert)
        except Exception as exc:
            logger.exception("alert %s: %s notification failed", alert.pk, channel)
            outcomes[channel] = f"failed: {exc!r}"
    if outcomes:
        Alert.objects.filter(pk=alert.pk).update(notifications={**alert.notifications, **outcomes})
        alert.notifications = {**alert.notifications, **outcomes}
    return outcomes


def alert_notify_in_thread(alert_id: int) -> None:
    """The body of a notifier thread: its own database connection, closed at the end."""
    try:
        alert = Alert.objects.select_related("rule").get(pk=alert_id)
        alert_notify(alert)
    except Exception:
        logger.exception("alert %s: notification failed", alert_id)
    finally:
        connection.close()


def alerts_purge_batch(batch: int) -> int:
    """Retention: resolved alerts older than ``JOBADMIN_HISTORY_DAYS``, one batch."""
    cutoff = timezone.now() - timedelta(days=settings.JOBADMIN_HISTORY_DAYS)
    ids = list(
        Alert.objects.filter(status=AlertStatus.RESOLVED, resolved_at__lt=cutoff).values_list("pk", flat=True)[:batch]
    )
    if ids:
        Alert.objects.filter(pk__in=ids).delete()
    return len(ids)
