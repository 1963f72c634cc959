"""Staff pages in headless chromium against real daphne + qcluster processes."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import services
from jobs.models import Job, JobStatus
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def enqueue_demo(page: Any, *, items: int, delay_ms: int) -> Job:
    page.goto("/admin/jobs/job/enqueue/")
    page.get_by_label("Job type").select_option("demo")
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("Items:", exact=True).fill(str(items))
    page.get_by_label("Delay ms:", exact=True).fill(str(delay_ms))
    page.get_by_role("button", name="Enqueue").click()
    # Generous: on SQLite the enqueue waits for the write lock behind the workers and monitor.
    page.wait_for_url("**/admin/jobs/job/*/change/", timeout=40000)
    job_id = page.url.rstrip("/").split("/")[-2]
    return Job.objects.get(pk=job_id)


def test_enqueue_through_the_form_refuses_bad_input_then_follows_a_job_live(page: Any) -> None:
    # Invalid input: field errors, nothing queued. (One test: each one starts its own servers.)
    page.goto("/admin/jobs/job/enqueue/demo/")
    page.get_by_label("Items:", exact=True).fill("0")
    page.get_by_role("button", name="Enqueue").click()
    assert page.get_by_text("Nothing was queued").is_visible()
    assert page.locator(".field-items .errorlist").inner_text()
    assert not Job.objects.exists()
    screenshot(page, "enqueue-errors")

    # Its queue paused, the job waits in `queued`: the page offers only what that allows.
    services.queue_pause(name="default")
    job = enqueue_demo(page, items=60, delay_ms=100)
    assert page.get_by_text(f"Queued demo job {job.pk}").is_visible()
    assert page.get_by_role("button", name="Cancel").is_visible()
    assert not page.get_by_role("button", name="Pause").is_visible()
    # The job page follows the job over the websocket: once the job runs, its buttons follow
    # the server's transition table without a reload ...
    page.wait_for_selector(".ja-jobpage [data-live-indicator][data-state=live]")
    page.evaluate("window.__sameDocument = true")
    services.queue_resume(name="default")
    page.get_by_role("button", name="Pause").wait_for(state="visible", timeout=20000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.get_by_role("button", name="Cancel").is_visible()
    assert not page.get_by_role("button", name="Retry").is_visible()
    page.wait_for_function(
        """() => Number(document.querySelector('.ja-live-progress [role=progressbar]')
                   .getAttribute('aria-valuenow')) >= 10 && window.__sameDocument === true""",
        timeout=20000,
    )
    # ... and shows the job done, its result and timeline, without a reload.
    page.wait_for_selector("[data-field=status] .ja-status-completed", timeout=30000)
    page.locator("table.ja-timeline tr.ja-event-completed").wait_for(state="visible")
    assert page.evaluate("window.__sameDocument") is True
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    screenshot(page, "job-page")
