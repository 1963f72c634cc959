"""``/api/docs/`` (Swagger UI) and ``/api/redoc/`` render with the network cut off: every asset comes
from this server (drf-spectacular-sidecar's static files), none from a CDN, and within the CSP."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import Stack, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _offline(page: Any, stack: Stack) -> tuple[list[str], list[str]]:
    """Abort every request that is not to the test server; collect them and any CSP violation."""
    local = urlsplit(stack.url).netloc
    refused: list[str] = []
    problems: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if urlsplit(url).netloc == local or url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort("internetdisconnected")

    page.context.route("**/*", route)
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return refused, problems


def test_swagger_ui_renders_every_operation_with_no_internet(page: Any, stack: Stack) -> None:
    refused, problems = _offline(page, stack)
    response = page.goto("/api/docs/")
    assert response.status == 200
    # Swagger UI drew the schema: the title and the operations of the jobs API.
    page.wait_for_selector(".swagger-ui .info .title", timeout=20000)
    assert "JobAdmin API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector('.opblock-summary-path[data-path="/api/jobs/"]')
    assert page.locator('.opblock-summary-path[data-path="/api/alert-rules/"]').count() >= 1
    screenshot(page, "api-docs", full_page=False)
    assert refused == []
    assert problems == []


def test_redoc_renders_with_no_internet(page: Any, stack: Stack) -> None:
    refused, problems = _offline(page, stack)
    assert page.goto("/api/redoc/").status == 200
    page.wait_for_selector("h1:has-text('JobAdmin API')", timeout=20000)
    page.wait_for_selector("text=/api/jobs/")
    assert refused == []
    # ReDoc's bundle links its "API docs by Redocly" logo from its CDN: the CSP stops it before any
    # request leaves (``refused`` is empty); the page needs nothing else from outside.
    assert [p for p in problems if "cdn.redoc.ly/redoc/logo-mini.svg" not in p] == []
