"""The staff pages run under the Content Security Policy with no violation (issue "hardening":
a CSP that the staff pages satisfy). Each page is loaded in chromium; any violation report or
CSP console error fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import services
from jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_no_staff_page_violates_the_content_security_policy(page: Any) -> None:
    job = services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 1}, user=None)
    assert Job.objects.filter(pk=job.pk).exists()
    problems: list[str] = []
    page.on(
        "console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    for path in (
        "/admin/",
        "/admin/monitor/",
        "/admin/analytics/",
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job.pk}/change/",
        "/admin/jobs/job/enqueue/",
    ):
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    assert problems == []
