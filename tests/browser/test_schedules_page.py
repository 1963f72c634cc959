"""The schedules admin in chromium: the next five runs follow the timing as it is typed, a wrong
expression shows its error before anything is saved, and the saved schedule is listed."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from jobs.models import Schedule
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_the_schedule_form_previews_the_next_runs_as_the_timing_is_typed(page: Any, browser: Any) -> None:
    page.goto("/admin/jobs/schedule/add/")
    page.get_by_label("Name").fill("weekday export")
    page.get_by_label("Type").select_option("export-jobs")
    page.get_by_label("Params").fill("{}")
    page.get_by_label("Timezone").fill("Europe/Berlin")
    runs = page.locator(".ja-next-runs li")

    page.get_by_label("Cron").fill("0 25 * * *")
    expect(page.locator(".ja-next-runs")).to_contain_text("hour")
    assert "errorlist" in (runs.first.get_attribute("class") or "")

    page.get_by_label("Cron").fill("30 6 * * 1-5")
    expect(page.locator(".ja-next-runs li:not(.errorlist)")).to_have_count(5)
    first = runs.first.inner_text()
    assert "06:30" in first
    assert "CET" in first or "GMT+1" in first  # the schedule's own zone, labelled
    assert "05:30 UTC" in first
    screenshot(page, "schedule-form")

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/jobs/schedule/")
    assert Schedule.objects.filter(name="weekday export", cron="30 6 * * 1-5").exists()
    assert "weekday export" in page.content()
    screenshot(page, "schedules")

    views: dict[str, dict[str, Any]] = {
        "schedules-dark": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "dark"},
        "schedules-phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
    }
    for name, options in views.items():
        context = page.context
        other = browser.new_context(base_url=page.url.split("/admin/")[0], **options)
        other.add_cookies(context.cookies())
        tab = other.new_page()
        tab.goto("/admin/jobs/schedule/")
        screenshot(tab, name)
        schedule = Schedule.objects.get(name="weekday export")
        tab.goto(f"/admin/jobs/schedule/{schedule.pk}/change/")
        expect(tab.locator(".ja-next-runs li:not(.errorlist)")).to_have_count(5)
        screenshot(tab, f"{name}-form")
        other.close()
