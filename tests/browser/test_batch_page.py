"""The batch page in chromium: its members, counts, progress and status follow the members live
(batch:<id>, each member's job-update carrying the batch's aggregate) as real workers run them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from jobs import services
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

MEMBERS = 3


def test_the_batch_page_follows_its_members_to_completion_without_a_reload(page: Any, browser: Any) -> None:
    staff = get_user_model().objects.get(username="staff")
    member = {"type": "demo", "params": {"items": 6, "delay_ms": 500}}
    batch = services.batch_create(name="nightly crawl", members=[member] * MEMBERS, user=staff, actor=staff)
    services.batch_create(name="finished import", members=[{"type": "demo", "params": {"items": 1}}], user=staff)
    page.goto(f"/admin/jobs/batch/{batch.pk}/change/")
    page.evaluate("window.__notReloaded = true")  # gone if the page reloads
    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "live")
    expect(page.get_by_role("link", name="Members in the job list")).to_have_attribute(
        "href", f"/admin/jobs/job/?batch={batch.pk}"
    )

    expect(page.locator('[data-count="running"]')).not_to_have_text("0", timeout=20000)
    expect(page.locator("[data-member-id] .ja-status-running").first).to_be_visible()
    bar = page.locator("[data-batch-progress]")
    expect(bar).not_to_have_attribute("aria-valuenow", "0")
    expect(page.locator('[data-field="eta"] time[data-format="clock"]')).to_be_visible()
    screenshot(page, "batch-page-running")

    expect(page.locator('[data-count="completed"]')).to_have_text(str(MEMBERS), timeout=30000)
    expect(page.locator('[data-field="batch-status"] .ja-badge')).to_have_text("Completed")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("[data-member-id] .ja-status-completed")).to_have_count(MEMBERS)
    expect(page.locator('[data-field="finished"] time')).to_be_visible()
    expect(page.locator('[data-batch-action="cancel"]')).to_be_hidden()
    assert page.evaluate("window.__notReloaded") is True
    # Every time says its zone (jobadmin/admin/time.js): the browser's here, UTC on the server's.
    times = page.locator("time").all_inner_texts()
    assert times
    assert all(re.search(r"(UTC|GMT[+-]?\d*|[A-Z]{2,5})$", text.strip()) for text in times), times
    screenshot(page, "batch-page")

    page.goto("/admin/jobs/batch/")
    expect(page.locator("#result_list")).to_contain_text("nightly crawl")
    expect(page.locator("#result_list")).to_contain_text(f"{MEMBERS} completed")
    screenshot(page, "batches")

    views: dict[str, dict[str, Any]] = {
        "dark": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "dark"},
        "light-1440": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "light"},
        "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
    }
    for name, options in views.items():
        other = browser.new_context(
            base_url=page.url.split("/admin/")[0], timezone_id="America/New_York", locale="en-US", **options
        )
        other.add_cookies(page.context.cookies())
        tab = other.new_page()
        tab.goto("/admin/jobs/batch/")
        screenshot(tab, f"batches-{name}")
        tab.goto(f"/admin/jobs/batch/{batch.pk}/change/")
        expect(tab.locator("[data-live-indicator]")).to_have_attribute("data-state", "live")
        screenshot(tab, f"batch-page-{name}")
        other.close()
