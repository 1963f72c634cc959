"""Alerts on the live monitor in headless chromium (issue 23, item 1): the open alerts on load, a
resolved alert shown as resolved and never announced, a new firing announced once (toast, browser
notification, sound), a reconnect and a reload that repeat nothing, acknowledge and resolve in
place, the notification list, and pausing the live monitor."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from jobs.models import JobStatus
from monitoring.models import Alert, AlertRule, AlertStatus, Comparison, Metric, Severity
from tests.browser.conftest import Stack, screenshot
from tests.conftest import wait_for
from tests.factories import JobFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

INDICATOR = ".ja-monitor [data-live-indicator]"
RULE = "browser-burst"

# Count what the page announces: browser notifications (granted) and beeps (AudioContext).
STUBS = """
window.__notified = [];
window.Notification = function (title, options) { window.__notified.push(title + ' | ' + (options && options.body)); };
window.Notification.permission = 'granted';
window.Notification.requestPermission = function () { return Promise.resolve('granted'); };
window.__beeps = 0;
window.AudioContext = function () {
  var node = { frequency: {}, gain: {}, connect: function () {}, start: function () {}, stop: function () {} };
  return { currentTime: 0, destination: {},
           createOscillator: function () { window.__beeps += 1; return node; },
           createGain: function () { return node; } };
};
localStorage.setItem('jobadmin.optin.notify', '1');
localStorage.setItem('jobadmin.optin.sound', '1');
"""


def announced(page: Any) -> dict[str, int]:
    return page.evaluate(
        """() => ({toasts: document.querySelectorAll('.ja-toast[role=alert]').length,
                   notified: window.__notified.length, beeps: window.__beeps,
                   notes: window.JobAdminMonitor.notifications.items.length})"""
    )


def _only_our_rule() -> None:
    """The built-in rules off (a loaded machine fires cpu-high), and their alerts resolved, before the page loads."""
    AlertRule.objects.exclude(name=RULE).update(enabled=False)
    wait_for(
        lambda: not Alert.objects.exclude(rule__name=RULE).filter(status__in=["open", "acknowledged"]).exists(),
        timeout=30,
        message="the monitor did not resolve the disabled rules' alerts",
    )


def _breaching_rule() -> AlertRule:
    """A rule the monitor (every second in the stack) opens an alert for: one failed job in 10 min.
    The built-in rules are off, so this rule's alerts are the only ones."""
    AlertRule.objects.exclude(name=RULE).update(enabled=False)
    JobFactory.create(status=JobStatus.FAILED, started_at=timezone.now(), finished_at=timezone.now(), error="boom")
    rule, _ = AlertRule.objects.update_or_create(
        name=RULE,
        defaults={
            "metric": Metric.FAILURES,
            "comparison": Comparison.GT,
            "threshold": 0,
            "window_seconds": 600,
            "severity": Severity.CRITICAL,
            "notify_websocket": True,
        },
    )
    return rule


def _open_alert(rule: AlertRule, *, exclude: int | None = None) -> Alert:
    def found() -> Alert | None:
        qs = Alert.objects.filter(rule=rule, status=AlertStatus.OPEN)
        if exclude is not None:
            qs = qs.exclude(pk=exclude)
        return qs.first()

    wait_for(lambda: found() is not None, timeout=30, message="the monitor did not open the alert")
    alert = found()
    assert alert is not None
    return alert


def test_a_resolved_alert_is_shown_resolved_and_never_announced_a_new_firing_is(page: Any, stack: Stack) -> None:
    _only_our_rule()
    rule = _breaching_rule()
    alert = _open_alert(rule)
    page.add_init_script(STUBS)
    page.goto("/admin/monitor/")
    page.wait_for_selector(f"{INDICATOR}[data-state=live]")
    # Open when the page loads: listed (server-rendered), not announced.
    item = page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{alert.pk}"][data-status=open]')
    assert RULE in item.inner_text()
    assert page.inner_text("[data-open-alert-count]") == "1"
    screenshot(page, "monitor-open-alerts", full_page=False)

    # The condition clears: the monitor resolves the alert itself; the page shows it resolved.
    AlertRule.objects.filter(pk=rule.pk).update(threshold=1000)
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{alert.pk}"][data-status=resolved]', timeout=30000)
    assert "Resolved" in page.inner_text(f'[data-open-alerts] li[data-alert-id="{alert.pk}"]')
    assert page.inner_text("[data-open-alert-count]") == "0"
    page.wait_for_selector("[data-notes] li[data-status=resolved]")
    assert announced(page) == {"toasts": 0, "notified": 0, "beeps": 0, "notes": 1}

    # It breaches again: a new alert, a new firing, announced once (toast, notification, sound).
    AlertRule.objects.filter(pk=rule.pk).update(threshold=0)
    second = _open_alert(rule, exclude=alert.pk)
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{second.pk}"][data-status=open]', timeout=30000)
    page.wait_for_selector(f'.ja-toast[role=alert][data-alert-id="{second.pk}"]')
    assert announced(page) == {"toasts": 1, "notified": 1, "beeps": 1, "notes": 2}
    assert page.inner_text("[data-unread-count]") == "2"
    screenshot(page, "monitor-notifications", full_page=False)

    # Acknowledge in place (the API), then mark all read and clear the list.
    page.click(f'[data-open-alerts] li[data-alert-id="{second.pk}"] button:has-text("Acknowledge")')
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{second.pk}"][data-status=acknowledged]')
    assert Alert.objects.get(pk=second.pk).status == AlertStatus.ACKNOWLEDGED
    page.click("[data-notes-read]")
    assert page.inner_text("[data-unread-count]") == "0"
    assert announced(page)["toasts"] == 1  # an acknowledgement is no firing
    page.click(f'[data-open-alerts] li[data-alert-id="{second.pk}"] button:has-text("Resolve")')
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{second.pk}"][data-status=resolved]')
    page.click("[data-notes-clear]")
    assert page.evaluate("window.JobAdminMonitor.notifications.items.length") == 0
    assert (
        page.evaluate(
            "localStorage.getItem('jobadmin.notifications.' + document.querySelector('.ja-monitor').dataset.userId)"
        )
        == "[]"
    )


def test_a_reconnect_and_a_reload_repeat_nothing_and_pause_holds_updates(page: Any, stack: Stack) -> None:
    _only_our_rule()
    page.add_init_script(STUBS)
    page.goto("/admin/monitor/")
    page.wait_for_selector(f"{INDICATOR}[data-state=live]")
    rule = _breaching_rule()
    alert = _open_alert(rule)
    page.wait_for_selector(f'.ja-toast[role=alert][data-alert-id="{alert.pk}"]', timeout=30000)
    before = announced(page)
    assert before == {"toasts": 1, "notified": 1, "beeps": 1, "notes": 1}

    # The server goes away and comes back: the client resubscribes from its last event with an
    # overlap, so the alert's event arrives again; nothing is announced or listed twice.
    page.evaluate("window.__sameDocument = true")
    stack.stop_web()
    page.wait_for_selector(f"{INDICATOR}[data-state=reconnecting]", timeout=15000)
    stack.start_web()
    page.wait_for_selector(f"{INDICATOR}[data-state=live]", timeout=20000)
    page.wait_for_timeout(3000)  # the replay has arrived by now
    assert page.evaluate("window.__sameDocument === true")
    assert announced(page) == before

    # A reload: the alert is among the open ones the page renders and in the stored list.
    page.reload()
    page.wait_for_selector(f"{INDICATOR}[data-state=live]")
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{alert.pk}"][data-status=open]')
    page.wait_for_timeout(2000)
    assert announced(page) == {"toasts": 0, "notified": 0, "beeps": 0, "notes": 1}

    # Pause: updates are held, the page says "Paused"; the alert resolves meanwhile; resume catches up.
    page.click("[data-pause-toggle]")
    assert page.inner_text("[data-paused-badge]").startswith("Paused")
    AlertRule.objects.filter(pk=rule.pk).update(threshold=1000)
    page.wait_for_function("() => window.JobAdminMonitor.held() > 0", timeout=30000)
    assert page.get_attribute(f'[data-open-alerts] li[data-alert-id="{alert.pk}"]', "data-status") == "open"
    assert "waiting" in page.inner_text("[data-paused-badge]")
    screenshot(page, "monitor-paused", full_page=False)
    page.click("[data-pause-toggle]")
    page.wait_for_selector(f'[data-open-alerts] li[data-alert-id="{alert.pk}"][data-status=resolved]')
    assert page.is_hidden("[data-paused-badge]")
    assert announced(page)["toasts"] == 0
