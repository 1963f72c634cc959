"""One rule for times (issue 23, item 3): in a browser set to New York time, every time a staff page
shows is the API's UTC value in America/New_York, labelled with the zone ("Dec 7, 2026, 09:05:09
EST"), on the job list, the job page (fields, timeline, ETA), the monitor and the alerts; a live
update keeps the format; the analytics' time axes and peak hours name the zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs import services
from jobs.models import Job, JobStatus
from tests.browser.conftest import PASSWORD, Stack, screenshot
from tests.conftest import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

NEW_YORK = ZoneInfo("America/New_York")


def in_new_york(iso: str, *, clock: bool = False) -> str:
    """What the page must show for the API's value ``iso`` (Intl's en-US pattern, 24-hour)."""
    d = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(NEW_YORK)
    if clock:
        return f"{d:%H:%M:%S} {d.tzname()}"
    return f"{d:%b} {d.day}, {d.year}, {d:%H:%M:%S} {d.tzname()}"


@pytest.fixture
def ny_page(browser: Any, stack: Stack, staff_login: dict[str, str]) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=stack.url, timezone_id="America/New_York", locale="en-US"
    )
    context.set_default_timeout(15000)
    tab = context.new_page()
    tab.goto("/admin/login/?next=/admin/")
    tab.get_by_label("Username").fill(staff_login["username"])
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/admin/")
    try:
        yield tab
    finally:
        context.close()


def shown_times(page: Any, scope: str = "body") -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        f"{scope} time[datetime]",
        "nodes => nodes.map(n => ({iso: n.getAttribute('datetime'), text: n.textContent,"
        " clock: n.dataset.format === 'clock' ? '1' : ''}))",
    )


def assert_all_in_new_york(times: list[dict[str, str]]) -> None:
    assert times, "no <time> on the page"
    for t in times:
        assert t["text"] == in_new_york(t["iso"], clock=bool(t["clock"])), t


def test_every_time_is_the_apis_utc_value_in_the_viewers_zone(ny_page: Any, stack: Stack) -> None:
    page = ny_page
    job = services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 1}, user=None)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED, timeout=40, message="job not done")
    api = page.request.get(f"/api/jobs/{job.pk}/").json()
    events = page.request.get(f"/api/jobs/{job.pk}/events/").json()
    event_rows = events["results"] if isinstance(events, dict) else events

    # The job list: the Created column, and the date filter says whose days it counts.
    page.goto("/admin/jobs/job/")
    row = f'tr:has(a[href*="{job.pk}"])'
    created = page.eval_on_selector(f"{row} time[datetime]", "n => [n.getAttribute('datetime'), n.textContent]")
    assert datetime.fromisoformat(created[0]) == datetime.fromisoformat(api["created_at"])
    assert created[1] == in_new_york(api["created_at"])
    assert created[1].endswith(("EST", "EDT"))
    assert "days in UTC" in page.inner_text("#changelist-filter")
    assert_all_in_new_york(shown_times(page, "#result_list"))
    screenshot(page, "job-list-new-york", full_page=False)

    # The job page: created, started, finished, and every timeline row, against the API.
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    facts = shown_times(page, ".ja-facts")
    by_iso = {datetime.fromisoformat(t["iso"]): t["text"] for t in facts}
    for field in ("created_at", "started_at", "finished_at"):
        assert by_iso[datetime.fromisoformat(api[field])] == in_new_york(api[field]), field
    timeline = shown_times(page, ".ja-timeline")
    assert len(timeline) >= 3
    api_times = {datetime.fromisoformat(e["created_at"]) for e in event_rows}
    for t in timeline:
        assert datetime.fromisoformat(t["iso"]) in api_times, t
    assert_all_in_new_york(timeline)

    # The monitor: the feed of finished jobs, in the same rule (a time of day, labelled).
    page.goto("/admin/monitor/")
    item = f'.ja-feed li[data-job-id="{job.pk}"] time'
    page.wait_for_selector(item)
    assert page.inner_text(item) == in_new_york(api["finished_at"], clock=True)
    assert_all_in_new_york(shown_times(page, ".ja-monitor"))

    # A live update keeps the format: a new job finishing arrives over the socket.
    page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
    second = services.job_enqueue(job_type="demo", params={"items": 2, "delay_ms": 1}, user=None)
    live_item = f'.ja-feed li[data-job-id="{second.pk}"] time'
    page.wait_for_selector(live_item, timeout=40000)
    finished = Job.objects.get(pk=second.pk).finished_at
    assert finished is not None
    assert page.inner_text(live_item) == in_new_york(finished.isoformat(), clock=True)

    # The analytics: the peak hours are counted in the viewer's zone and say so.
    page.goto("/admin/analytics/")
    page.wait_for_selector('[data-chart="peak_hours"] [data-zone]:has-text("America/New_York")', timeout=20000)
    assert "America/New_York" in page.inner_text('[data-chart="hourly"] [data-zone]')
    assert "days in UTC" in page.inner_text('[data-chart="daily"] [data-zone]')
