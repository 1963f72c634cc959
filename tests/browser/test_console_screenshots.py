"""Screenshots of the monitor's alerts and notifications, the analytics and the job list in New York
time, light and dark, at 1440 px and on a 390 px phone (docs/screenshots/, README). The checks are
layout ones: nothing on the monitor wider than the viewport, the alert panels on screen."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from jobs.models import JobStatus
from monitoring.models import Alert, AlertRule, AlertStatus, Comparison, Metric, Severity
from tests.browser.conftest import PASSWORD, SCHEMES, VIEWPORTS, Stack, screenshot
from tests.browser.test_monitor_alerts import _only_our_rule
from tests.conftest import wait_for
from tests.factories import JobFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def _login(browser: Any, stack: Stack, login: dict[str, str], *, viewport: dict[str, int], scheme: str) -> Any:
    context = browser.new_context(
        viewport=viewport, base_url=stack.url, timezone_id="America/New_York", locale="en-US", color_scheme=scheme
    )
    context.set_default_timeout(15000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(login["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    return page


def test_screenshots_of_the_console_light_dark_desktop_and_phone(
    browser: Any, stack: Stack, staff_login: dict[str, str]
) -> None:
    _only_our_rule()
    JobFactory.create(status=JobStatus.FAILED, started_at=timezone.now(), finished_at=timezone.now(), error="boom")
    AlertRule.objects.update_or_create(
        name="browser-burst",
        defaults={
            "metric": Metric.FAILURES,
            "comparison": Comparison.GT,
            "threshold": 0,
            "window_seconds": 600,
            "severity": Severity.CRITICAL,
        },
    )
    wait_for(lambda: Alert.objects.filter(status=AlertStatus.OPEN).exists(), timeout=30, message="no alert")
    for scheme in SCHEMES:
        for name, viewport in VIEWPORTS:
            page = _login(browser, stack, staff_login, viewport=viewport, scheme=scheme)
            page.goto("/admin/monitor/")
            page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
            page.wait_for_selector("[data-open-alerts] li[data-status=open]")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (scheme, name, overflow)
            screenshot(page, f"monitor-alerts-{scheme}-{name}")
            if name == "1440":
                page.goto("/admin/analytics/")
                page.wait_for_selector('[data-chart="peak_hours"] [data-zone]:has-text("America/New_York")')
                screenshot(page, f"analytics-new-york-{scheme}", full_page=False)
                page.goto("/admin/jobs/job/")
                screenshot(page, f"job-list-new-york-{scheme}", full_page=False)
            # The search box with its label in words, a search made, at both widths.
            page.goto("/admin/jobs/job/?q=boom")
            assert page.get_by_label("Search jobs").input_value() == "boom"
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, (scheme, name)
            screenshot(page, f"job-list-search-{scheme}-{name}", full_page=False)
            page.context.close()
