"""Staff pages in headless chromium against real daphne + qcluster processes."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Job, JobStatus
from tests.browser.conftest import screenshot
from tests.conftest import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def enqueue_demo(page: Any, *, items: int, delay_ms: int) -> Job:
    page.goto("/admin/jobs/job/enqueue/")
    page.get_by_label("Job type").select_option("demo")
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("Items:", exact=True).fill(str(items))
    page.get_by_label("Delay ms:", exact=True).fill(str(delay_ms))
    page.get_by_role("button", name="Enqueue").click()
    page.wait_for_url("**/admin/jobs/job/*/change/")
    job_id = page.url.rstrip("/").split("/")[-2]
    return Job.objects.get(pk=job_id)


def test_enqueue_a_demo_job_through_the_form_and_it_runs(page: Any) -> None:
    job = enqueue_demo(page, items=10, delay_ms=50)
    assert page.get_by_text(f"Queued demo job {job.pk}").is_visible()
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        timeout=30,
        interval=0.2,
        message="the demo job did not complete",
    )
    page.reload()
    assert page.locator("[data-field=status]").inner_text().strip() == "Completed"
    assert page.locator("table.ja-timeline").get_by_text("completed").count() >= 1
    screenshot(page, "job-page")


def test_invalid_enqueue_input_shows_errors_and_queues_nothing(page: Any) -> None:
    page.goto("/admin/jobs/job/enqueue/demo/")
    page.get_by_label("Items:", exact=True).fill("0")
    page.get_by_role("button", name="Enqueue").click()
    assert page.get_by_text("Nothing was queued").is_visible()
    assert page.locator(".field-items .errorlist").inner_text()
    assert not Job.objects.exists()
    screenshot(page, "enqueue-errors")
