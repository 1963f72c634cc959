"""Where websockets do not get through: the monitor falls back to SSE, then to long-polling,
stays live over each and says so; with nothing getting through, its data shows as stale."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import SCHEMES, Stack, screenshot
from tests.browser.test_monitor import INDICATOR, progress_of
from tests.browser.test_staff_pages import enqueue_demo

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

EXTRAS = ".ja-monitor [data-live-extras]"


def advances(page: Any, job_id: str, by: int = 5) -> None:
    first = progress_of(page, job_id)
    page.wait_for_function(
        """([id, v]) => { const b = document.querySelector(`tr[data-job-id="${id}"] [role=progressbar]`);
                          return b && Number(b.getAttribute('aria-valuenow')) >= v; }""",
        arg=[job_id, first + by],
        timeout=30000,
    )


def test_with_websockets_blocked_the_monitor_stays_live_over_sse_then_long_poll(page: Any, stack: Stack) -> None:
    refused: list[str] = []

    def refuse(ws: Any) -> None:  # a proxy that will not upgrade: the socket closes at once
        refused.append(ws.url)
        ws.close()

    page.route_web_socket(re.compile(r".*/ws/jobs/.*"), refuse)
    job = enqueue_demo(page, items=400, delay_ms=100)
    page.goto("/admin/monitor/")
    page.evaluate("window.__sameDocument = true")

    # Two refused websockets, then SSE: live, and it says so.
    page.wait_for_selector(f"{INDICATOR}[data-state=live][data-transport=sse]", timeout=30000)
    assert len(refused) >= 2
    assert page.inner_text(INDICATOR) == "Live · SSE (fallback)"
    assert "attempts" in page.inner_text(EXTRAS)
    assert page.is_visible(f"{EXTRAS} [data-live-reconnect]")
    advances(page, str(job.pk))
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent.includes('last message')", arg=f"{EXTRAS} [data-live-details]"
    )
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": 1440, "height": 900})
        screenshot(page, f"monitor-fallback-sse-{scheme}", full_page=False)
        page.set_viewport_size({"width": 390, "height": 844})
        screenshot(page, f"monitor-fallback-sse-{scheme}-phone", full_page=False)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1440, "height": 900})

    # SSE blocked as well ("Reconnect now" starts over from the websocket): long-polling.
    page.route(re.compile(r".*/api/stream/.*"), lambda route: route.abort())
    page.click(f"{EXTRAS} [data-live-reconnect]")
    page.wait_for_selector(f"{INDICATOR}[data-state=live][data-transport=long-poll]", timeout=40000)
    assert page.inner_text(INDICATOR) == "Live · long-polling (fallback)"
    advances(page, str(job.pk))
    screenshot(page, "monitor-fallback-long-poll", full_page=False)

    # Nothing gets through: after a few seconds the page's data looks stale, and says why.
    page.route(re.compile(r".*/api/events/.*"), lambda route: route.abort())
    page.click(f"{EXTRAS} [data-live-reconnect]")
    page.wait_for_selector(".ja-monitor[data-live-stale]", timeout=20000)
    assert page.get_attribute(INDICATOR, "data-state") == "reconnecting"
    assert "not live" in (page.get_attribute(INDICATOR, "title") or "")
    screenshot(page, "monitor-fallback-stale", full_page=False)

    # The stream and the poll back (websockets still blocked): live again, fresh, same document.
    page.unroute_all()
    page.click(f"{EXTRAS} [data-live-reconnect]")
    page.wait_for_selector(f"{INDICATOR}[data-state=live]", timeout=40000)
    page.wait_for_function("!document.querySelector('.ja-monitor').hasAttribute('data-live-stale')")
    advances(page, str(job.pk))
    assert page.evaluate("window.__sameDocument === true")
