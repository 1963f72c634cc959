"""The installed package holds every template, static file and browser library the pages use
(issue "reusable": the wheel had only .py files, so every admin page was a 500)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from tests.reusable.conftest import ROOT, tracked_files

APPS = ("jobadmin", "jobs", "monitoring", "live", "console")


def page_files() -> set[str]:
    """Every tracked template and static file of the apps, as a path inside the package."""
    return {
        name
        for name in tracked_files()
        if name.split("/", 1)[0] in APPS and ("/templates/" in name or "/static/" in name)
    }


def test_the_pages_files_are_in_the_apps_not_in_project_folders() -> None:
    assert not (ROOT / "templates").exists()
    assert not (ROOT / "static").exists()
    assert "console/static/vendor/chartjs/chart.umd.min.js" in page_files()
    assert "console/templates/admin/index.html" in page_files()


def test_the_wheel_ships_every_template_and_static_file(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert page_files() - shipped == set()
    assert not [name for name in shipped if "node_modules" in name]
    assert any(name.endswith("migrations/0001_initial.py") for name in shipped)


def test_the_sdist_ships_them_too(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        shipped = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert page_files() - shipped == set()


def test_the_vendored_chart_js_is_the_version_package_lock_pins() -> None:
    import json

    pinned = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/chart.js"]["version"]
    vendored = (ROOT / "console/static/vendor/chartjs/VERSION").read_text().strip()
    assert vendored == pinned
    assert f"Chart.js v{pinned}" in (ROOT / "console/static/vendor/chartjs/chart.umd.min.js").read_text()[:300]
