"""Per-type health on the staff pages in headless chromium: the analytics table (worst grade first,
sortable), each chart's data table against the chart's own data, the grade of each job on the monitor
(and its refresh), the monitor's columns at 1366 and 1440 px, and axe-core's serious and critical
violations on the monitor, analytics, the admin index and the job list, light and dark, at 1366 px."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobStatus
from tests.browser.conftest import PASSWORD, SCHEMES, VIEWPORTS, Stack, axe_violations, screenshot
from tests.conftest import wait_for
from tests.factories import JobFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

# Worst grade first, then more runs first, then by name (analytics.js, compareRows).
EXPECTED_ORDER = ["import-csv", "send-newsletter", "import-rows", "demo", "resize-images", "export-jobs"]
MONITOR_COLUMNS = ["Job", "Status", "Type health", "Progress", "Step", "Items", "ETA"]

# For each chart: where its data table differs from the data Chart.js drew (empty: none).
CHART_TABLE_MISMATCHES = """() => [...document.querySelectorAll('figure[data-chart]')].flatMap(figure => {
  const data = Chart.getChart(figure.querySelector('canvas')).data;
  const table = figure.querySelector('[data-chart-data] table');
  if (!table) return [figure.dataset.chart + ': no table'];
  const head = [...table.tHead.rows[0].cells].slice(1).map(c => c.textContent);
  const want = data.datasets.map(d => d.label);
  const out = JSON.stringify(head) === JSON.stringify(want) ? [] : [figure.dataset.chart + ': columns ' + head];
  const rows = [...table.tBodies[0].rows];
  if (rows.length !== data.labels.length) out.push(figure.dataset.chart + ': ' + rows.length + ' rows');
  rows.forEach((row, i) => {
    if (row.cells[0].textContent !== String(data.labels[i])) out.push(figure.dataset.chart + ': label ' + i);
    data.datasets.forEach((d, j) => {
      const v = d.data[i];
      const text = v === null || v === undefined ? '—' : String(Math.round(v * 1000) / 1000);
      if (row.cells[j + 1].textContent !== text) out.push(figure.dataset.chart + ': ' + i + ',' + j);
    });
  });
  return out;
})"""


def _finished(job_type: str, *, failed: int, completed: int, items: int | None = None) -> None:
    """Jobs of ``job_type`` that finished a minute ago after 10 s, ``items`` items each."""
    started = timezone.now() - timedelta(minutes=2)
    for status, n in ((JobStatus.FAILED, failed), (JobStatus.COMPLETED, completed)):
        JobFactory.create_batch(
            n,
            type=job_type,
            status=status,
            created_at=started,
            started_at=started,
            finished_at=started + timedelta(seconds=10),
            duration=10.0,
            total_items=items,
            processed_items=items or 0,
            error="ValueError: row 17 has no e-mail address" if status == JobStatus.FAILED else "",
        )


def _seed() -> Job:
    _finished("import-csv", failed=1, completed=4)  # 20 % errors: poor
    _finished("send-newsletter", failed=1, completed=14)  # 6.7 %: fair
    _finished("import-rows", failed=0, completed=3, items=200)  # 20 items a second: good
    _finished("resize-images", failed=0, completed=3, items=1000)  # 100 a second: excellent
    _finished("export-jobs", failed=0, completed=2)  # no items, no errors: excellent
    _finished("demo", failed=0, completed=2)
    # On the monitor: a running demo (a real one, its worker heartbeating) and a queued newsletter.
    JobFactory.create(type="send-newsletter", queue="batch", run_after=timezone.now() + timedelta(hours=1))
    running = services.job_enqueue(job_type="demo", params={"items": 3000, "delay_ms": 100}, user=None)
    wait_for(lambda: Job.objects.get(pk=running.pk).status == JobStatus.RUNNING, timeout=40, message="demo not running")
    return running


def _page(browser: Any, stack: Stack, *, width: int, scheme: str) -> Any:
    # bypass_csp: axe-core goes into the page as an inline script.
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        base_url=stack.url,
        color_scheme=scheme,
        timezone_id="America/New_York",
        locale="en-US",
        bypass_csp=True,
    )
    context.set_default_timeout(15000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    return page


def _health_rows(page: Any) -> list[tuple[str, str]]:
    return [
        (row.get_attribute("data-type"), row.locator(".ja-badge").inner_text())
        for row in page.locator("[data-type-health-body] tr").all()
    ]


def _open_analytics(page: Any, range_name: str = "1d") -> None:
    page.goto(f"/admin/analytics/?range={range_name}")
    page.wait_for_selector(".ja-analytics[data-loaded=true]")


def check_analytics(page: Any) -> None:
    _open_analytics(page)
    api = page.request.get("/api/analytics/types/?range=1d").json()["results"]
    grades = {row["type"]: row["grade"] for row in api}
    assert _health_rows(page) == [(name, grades[name]) for name in EXPECTED_ORDER]
    assert grades["import-csv"] == "poor"
    assert grades["import-rows"] == "good"
    grade_heading = page.locator('th[data-sort-key="grade"]')
    assert grade_heading.get_attribute("aria-sort") == "ascending"
    # A heading sorts: runs, most first; again, fewest first.
    runs = page.locator('th[data-sort-key="total"]')
    runs.get_by_role("button").click()
    assert runs.get_attribute("aria-sort") == "descending"
    assert grade_heading.get_attribute("aria-sort") is None
    totals = [int(t) for t in page.locator("[data-type-health-body] tr td:nth-child(3)").all_inner_texts()]
    assert totals == sorted(totals, reverse=True)
    assert totals[0] == 16  # the newsletters, the queued one too
    runs.get_by_role("button").click()
    assert runs.get_attribute("aria-sort") == "ascending"
    assert "row 17 has no e-mail address" in page.locator('tr[data-type="import-csv"]').inner_text()

    # Every chart's text alternative is its data, for this range and after a redraw for another.
    assert page.evaluate(CHART_TABLE_MISMATCHES) == []
    assert page.locator("figure[data-chart] [data-chart-data] table").count() == 11
    page.locator('figure[data-chart="types"] [data-chart-data] summary').click()
    types_table = page.locator('figure[data-chart="types"] [data-chart-data] table')
    assert types_table.is_visible()
    assert "import-csv" in types_table.inner_text()
    page.get_by_role("link", name="7d", exact=True).click()
    page.wait_for_selector(".ja-analytics[data-loaded=true]")
    assert page.evaluate(CHART_TABLE_MISMATCHES) == []


def check_monitor_columns(page: Any, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    headings = page.evaluate(
        """() => { const box = document.querySelector('.ja-table-scroll').getBoundingClientRect();
                   return [...document.querySelectorAll('.ja-jobs-table th')].map(th => {
                     const r = th.getBoundingClientRect();
                     const inside = r.left >= box.left - 1 && r.right <= box.right + 1;
                     return [th.textContent.trim(), inside, r.width]; }); }"""
    )
    assert [name for name, _, _ in headings] == MONITOR_COLUMNS
    assert all(inside for _, inside, _ in headings), (width, headings)
    assert min(w for _, _, w in headings) >= 90, (width, headings)
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def check_monitor(page: Any, running: Job) -> None:
    page.goto("/admin/monitor/")
    page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
    demo_row = page.locator(f'tr[data-job-id="{running.pk}"]')
    assert demo_row.locator("td:nth-child(3) .ja-badge").inner_text() == "excellent"
    assert page.locator('tr[data-status="queued"] td:nth-child(3)').inner_text() == "fair"
    for width in (1366, 1440):
        check_monitor_columns(page, width)
    # History changes (two demos fail): the next refresh from the API shows the new grade.
    _finished("demo", failed=2, completed=0)
    page.evaluate("window.JobAdminMonitor.refreshGrades()")
    page.wait_for_selector(f'tr[data-job-id="{running.pk}"][data-grade="poor"]')
    assert demo_row.locator(".ja-grade-poor").inner_text() == "poor"


def test_type_health_chart_tables_monitor_layout_and_axe_in_both_themes(
    browser: Any, stack: Stack, staff_login: dict[str, str]
) -> None:
    running = _seed()
    page = _page(browser, stack, width=1440, scheme="light")
    check_analytics(page)
    check_monitor(page, running)
    page.context.close()

    for scheme in SCHEMES:
        page = _page(browser, stack, width=1366, scheme=scheme)
        found = {}
        page.goto("/admin/monitor/")
        page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
        found["monitor"] = axe_violations(page)
        _open_analytics(page)
        page.eval_on_selector_all("[data-chart-data]", "ds => ds.forEach(d => { d.open = true; })")
        found["analytics"] = axe_violations(page)
        page.goto("/admin/")
        page.wait_for_selector("[data-health-badge][class*=ja-health-]")
        found["index"] = axe_violations(page)
        page.goto("/admin/jobs/job/")
        found["job list"] = axe_violations(page)
        assert found == {"monitor": [], "analytics": [], "index": [], "job list": []}, (scheme, found)
        page.context.close()

        for name, viewport in VIEWPORTS:
            page = _page(browser, stack, width=viewport["width"], scheme=scheme)
            _open_analytics(page)
            page.locator("#ja-health-h").scroll_into_view_if_needed()
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
            screenshot(page, f"analytics-health-{scheme}-{name}", full_page=False)
            page.goto("/admin/monitor/")
            page.wait_for_selector(".ja-monitor [data-live-indicator][data-state=live]")
            page.locator("#ja-active-h").scroll_into_view_if_needed()
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
            screenshot(page, f"monitor-health-{scheme}-{name}", full_page=False)
            page.context.close()
