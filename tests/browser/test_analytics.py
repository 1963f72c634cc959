"""The analytics page in headless chromium: every chart drawn with data, for every range."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import services
from jobs.models import Job, JobStatus
from monitoring.models import MetricSample
from tests.browser.conftest import screenshot
from tests.conftest import wait_for
from tests.factories import UserFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

CHART_HAS_PIXELS = """figure => {
  const canvas = figure.querySelector('canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}"""


def seed_history() -> None:
    """Real history: jobs of two types by two users run by the workers, some failing."""
    users: list[Any] = [UserFactory(username="ada"), UserFactory(username="grace")]
    for i in range(6):
        params = {"items": 3, "delay_ms": 10, **({"fail_at": 2} if i % 3 == 2 else {})}
        services.job_enqueue(job_type="demo", params=params, user=users[i % 2])
    services.job_enqueue(job_type="export-jobs", params={}, user=users[0])
    wait_for(
        lambda: not Job.objects.exclude(status__in=[JobStatus.COMPLETED, JobStatus.FAILED]).exists(),
        timeout=60,
        interval=0.2,
        message="the seeded jobs did not finish",
    )


def test_analytics_draws_every_chart_with_data(page: Any) -> None:
    seed_history()
    # The monitor process samples the system every second (see the stack fixture).
    wait_for(lambda: MetricSample.objects.count() >= 2, timeout=20, interval=0.2, message="no metric samples")
    page.goto("/admin/analytics/?range=1d")
    page.wait_for_selector(".ja-analytics[data-loaded=true]")
    figures = page.query_selector_all("figure[data-chart]")
    assert len(figures) == 11
    for figure in figures:
        key = figure.get_attribute("data-chart")
        assert figure.get_attribute("data-drawn") == "true", key
        assert int(figure.get_attribute("data-points") or 0) > 0, key
        assert figure.evaluate(CHART_HAS_PIXELS), key
    assert page.is_hidden("[data-analytics-error]")
    assert page.inner_text('[data-stat="total"]') == "7"
    assert "Demo failure at item 2" in page.inner_text("[data-errors]")
    screenshot(page, "analytics")

    for name in ["1h", "7d", "30d", "all"]:
        page.get_by_role("link", name=name, exact=True).click()
        page.wait_for_url(f"**/admin/analytics/?range={name}")
        page.wait_for_selector(".ja-analytics[data-loaded=true]")
        assert page.is_hidden("[data-analytics-error]"), page.inner_text("[data-analytics-error]")
        drawn = page.eval_on_selector_all("figure[data-chart]", "fs => fs.filter(f => f.dataset.drawn).length")
        assert drawn == 11, name

    # One test: each browser test starts its own servers, and the seeded history serves both.
    check_dark_theme_and_tablet_width(page)


def check_dark_theme_and_tablet_width(page: Any) -> None:
    page.set_viewport_size({"width": 768, "height": 1024})
    page.emulate_media(color_scheme="dark")
    page.goto("/admin/")
    assert page.locator(".ja-overview").get_by_role("link", name="Live monitor").is_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    screenshot(page, "index-dark-tablet")
    page.goto("/admin/jobs/job/")
    # No horizontal scrolling of the page itself at tablet width (the admin scrolls its table).
    assert page.evaluate("document.documentElement.scrollWidth") <= 768 + 1
    screenshot(page, "job-list-dark-tablet", full_page=False)
    page.goto("/admin/monitor/")
    page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768 + 1
    # Keyboard: the opt-in checkboxes and queue buttons are reachable and labelled.
    assert page.get_by_label("Browser notifications").is_visible()
    assert page.get_by_role("button", name="Pause queue default").is_visible()
    page.get_by_label("Sound").focus()
    page.keyboard.press("Space")
    assert page.get_by_label("Sound").is_checked()
    screenshot(page, "monitor-dark-tablet")
