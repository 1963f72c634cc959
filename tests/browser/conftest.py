"""Browser tests: headless Debian chromium driven by Playwright, against real processes.

Each test gets its own daphne (on a free port) and qcluster sharing the test database,
plus the monitor loop (which runs the event relay when Redis is configured; on the
embedded default the relay runs inside daphne). Screenshots go to
``test-artifacts/screenshots/``; with ``JOBADMIN_UPDATE_SCREENSHOTS=1`` also to
``docs/screenshots/`` (the set committed and shown in the README).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Processes, child_env, free_port, wait_for
from tests.factories import UserFactory

CHROMIUM = os.environ.get("JOBADMIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "pw-secret-123"  # tests.factories.UserFactory's password
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own local server
            return int(response.status) < 500
    except OSError:
        return False


@dataclass
class Stack:
    """The real application: a web server and workers on the test database."""

    processes: Processes
    port: int
    web: Any = None
    extra: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_web(self) -> None:
        self.web = self.processes.start(
            "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "jobadmin.asgi:application", name="daphne"
        )
        wait_for(
            lambda: _http_ok(f"{self.url}/admin/login/") or self.web.poll() is not None,
            timeout=30,
            interval=0.2,
            message="daphne did not start",
        )
        assert self.web.poll() is None, self.processes.log_of(self.web).decode(errors="replace")

    def stop_web(self) -> None:
        self.processes.stop(self.web)
        wait_for(lambda: not _http_ok(f"{self.url}/admin/login/"), timeout=10, message="daphne did not stop")


@pytest.fixture
def stack(processes: Processes) -> Iterator[Stack]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    app = Stack(processes=processes, port=free_port())
    app.extra.append(processes.qcluster())
    # Metrics and alert rules every second, so the pages have samples and alerts fire quickly.
    monitor_env = child_env(JOBADMIN_METRICS_INTERVAL="1", JOBADMIN_ALERTS_INTERVAL="1")
    app.extra.append(processes.start("manage.py", "monitor", env=monitor_env, name="monitor"))
    app.start_web()
    yield app
    for proc in [app.web, *reversed(app.extra)]:
        started = time.monotonic()
        processes.stop(proc, timeout=10)
        print(f"stopped {proc.args[1:3]} in {time.monotonic() - started:.1f} s")


@pytest.fixture
def staff_login(db: Any) -> dict[str, str]:
    UserFactory(username="staff", is_staff=True, is_superuser=True)
    return {"username": "staff", "password": PASSWORD}


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # (setting up rows, checking them) are still plain synchronous code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
            # ORM calls made while Playwright's loop was current may have opened their own
            # connection; close it so the test database can be dropped at the end.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def page(browser: Any, stack: Stack, staff_login: dict[str, str]) -> Iterator[Any]:
    """A logged-in staff page on the running stack."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.url)
    context.set_default_timeout(15000)
    tab = context.new_page()
    tab.goto("/admin/login/?next=/admin/")
    tab.get_by_label("Username").fill(staff_login["username"])
    tab.get_by_label("Password").fill(staff_login["password"])
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/admin/")
    try:
        yield tab
    finally:
        context.close()


# Every page a change touches is looked at in both themes, at the desktop width and on a phone
# (the screenshots in docs/screenshots/ are named ``<page>-<scheme>-<name>``).
SCHEMES = ("light", "dark")
VIEWPORTS = (("1440", {"width": 1440, "height": 900}), ("phone", {"width": 390, "height": 844}))


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("JOBADMIN_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
    return path


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# The impacts a page must have none of (axe-core's two highest).
AXE_BLOCKING = ("serious", "critical")


def axe_violations(page: Any, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core (npm, a dev dependency) finds on the page as it
    is now, every rule axe runs by default, minus the nodes matched by ``exclude``. The page's
    context needs ``bypass_csp=True``: the script goes in inline."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make pytest` installs it (npm ci)")
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async ([exclude, blocking]) => {
             const context = exclude.length ? { include: [document], exclude: exclude.map(s => [s]) } : document;
             const result = await axe.run(context, { resultTypes: ["violations"] });
             return result.violations.filter(v => blocking.includes(v.impact)).map(v => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary) }));
           }""",
        [list(exclude), list(AXE_BLOCKING)],
    )
    return found
