"""JobAdmin in a project of its own, exactly as docs/install.md says (issue "reusable").

The wheel is built from this checkout and installed into a fresh virtualenv with the newest
Django line (6.1 on Python 3.12 where that Python exists, else this interpreter's line);
``django-admin startproject`` makes the host; the three documented lines and a small app with
one ``@job`` are added; then ``migrate`` and the three processes (daphne, ``qcluster``,
``monitor``) as real processes. The host's job runs to completed, followed over the websocket
under the host's prefix; the job list, job page and monitor render on the host's admin with
every static file they name found; ``manage.py check`` reports no issue.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ops/"


def newest_python() -> tuple[str, Path]:
    """The interpreter and constraints of the newest Django line this machine can run (docs/install.md)."""
    # As .ci/run finds it: python3.12 on PATH if it runs (a pyenv shim may not), else pyenv's.
    for candidate in (shutil.which("python3.12"), *sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python"))):
        if candidate and subprocess.run([str(candidate), "-c", "pass"], capture_output=True).returncode == 0:
            return str(candidate), ROOT / "constraints-django61.txt"
    return sys.executable, ROOT / "constraints.txt"


def run(*args: Any, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def host_env(venv: Path, site: Path) -> dict[str, str]:
    """A clean environment: nothing of this test run's settings leaks into the host."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        DJANGO_SETTINGS_MODULE="site_config.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(site),
    )
    return env


SHOP_JOBS = """
from jobs.registry import job


@job("shop-restock", steps=["Count", "Order"])
def restock(ctx, params):
    for step in range(2):
        ctx.step(step)
        ctx.progress(processed=step + 1, total=2)
    return {"ordered": 3}
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, dist: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("host")
    python, constraints = newest_python()
    (wheel,) = dist.glob("*.whl")
    venv = tmp / "venv"
    run(python, "-m", "venv", venv, cwd=tmp)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, "-c", constraints, wheel, cwd=tmp)
    site = tmp / "site"
    site.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "site_config", site, cwd=tmp)
    config = site / "site_config"
    # The three documented lines (docs/install.md), and the host's own app with one job.
    settings_py = config / "settings.py"
    settings_py.write_text(
        settings_py.read_text()
        .replace(
            "INSTALLED_APPS = [",
            'from jobadmin.conf import JOBADMIN_APPS\n\nINSTALLED_APPS = [\n    "shop",',
        )
        .replace("\n]\n\nMIDDLEWARE", "\n    *JOBADMIN_APPS,\n]\n\nMIDDLEWARE", 1)
    )
    urls_py = config / "urls.py"
    urls_py.write_text(
        urls_py.read_text()
        .replace("from django.urls import path", "from django.urls import include, path")
        .replace(
            "    path('admin/', admin.site.urls),",
            f"    path('admin/', admin.site.urls),\n    path('{PREFIX}', include('jobadmin.urls')),",
        )
        .replace(
            '    path("admin/", admin.site.urls),',
            f'    path("admin/", admin.site.urls),\n    path("{PREFIX}", include("jobadmin.urls")),',
        )
    )
    asgi_py = config / "asgi.py"
    asgi_py.write_text(
        asgi_py.read_text().replace(
            "application = get_asgi_application()",
            "from jobadmin.routing import with_jobadmin\n\n"
            f'application = with_jobadmin(get_asgi_application(), prefix="{PREFIX}")',
        )
    )
    assert "with_jobadmin" in asgi_py.read_text()
    assert "jobadmin.urls" in urls_py.read_text()
    assert "JOBADMIN_APPS" in settings_py.read_text()
    (site / "shop").mkdir()
    (site / "shop" / "__init__.py").write_text("")
    (site / "shop" / "jobs.py").write_text(textwrap.dedent(SHOP_JOBS))
    env = host_env(venv, site)
    manage = [venv / "bin" / "python", site / "manage.py"]
    run(*manage, "migrate", "--noinput", cwd=site, env=env)
    run(
        *manage,
        "createsuperuser",
        "--noinput",
        "--username",
        "owner",
        "--email",
        "o@example.com",
        cwd=site,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": "a-long-host-password"},
    )
    port = free_port()
    logs = {name: open(tmp / f"{name}.log", "wb") for name in ("web", "workers", "monitor")}  # noqa: SIM115
    commands = {
        "web": [venv / "bin" / "daphne", "-b", "127.0.0.1", "-p", str(port), "site_config.asgi:application"],
        "workers": [*manage, "qcluster"],
        "monitor": [*manage, "monitor"],
    }
    procs = {
        name: subprocess.Popen(
            [str(a) for a in command],
            cwd=site,
            env=env,
            stdout=logs[name],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, command in commands.items()
    }
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/{PREFIX}api/health/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, message="the host's daphne did not answer")
        yield {"base": base, "site": site, "env": env, "manage": manage, "procs": procs, "tmp": tmp}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        for handle in logs.values():
            handle.close()


def _log(host: dict[str, Any], name: str) -> str:
    return (host["tmp"] / f"{name}.log").read_text(errors="replace")[-4000:]


def test_the_host_passes_the_check(host: dict[str, Any]) -> None:
    out = run(*host["manage"], "check", cwd=host["site"], env=host["env"])
    assert "System check identified no issues" in out


def test_the_hosts_job_runs_to_completed_followed_over_the_websocket_under_the_prefix(host: dict[str, Any]) -> None:
    base = host["base"]
    token = httpx.post(
        f"{base}/{PREFIX}api/auth/token/", json={"username": "owner", "password": "a-long-host-password"}
    ).json()["token"]
    headers = {"Authorization": f"Token {token}"}

    async def follow() -> list[str]:
        url = base.replace("http", "ws") + f"/{PREFIX}ws/jobs/?token={token}"
        async with websockets.connect(url) as socket:
            assert json.loads(await socket.recv())["type"] == "welcome"
            created = httpx.post(
                f"{base}/{PREFIX}api/jobs/", json={"type": "shop-restock", "params": {}}, headers=headers
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            await socket.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}))
            statuses: list[str] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "completed" not in statuses:
                message = json.loads(await asyncio.wait_for(socket.recv(), timeout=60))
                if message["type"] == "job-update" and message["job"]["id"] == job_id:
                    statuses.append(message["job"]["status"])
            return statuses

    statuses = asyncio.run(follow())
    assert statuses[-1] == "completed", (statuses, _log(host, "workers"), _log(host, "web"))
    assert "running" in statuses


def test_the_staff_pages_render_on_the_hosts_admin_with_every_static_file_found(host: dict[str, Any]) -> None:
    base = host["base"]
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        login = client.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/admin/login/?next=/admin/",
            data={"username": "owner", "password": "a-long-host-password", "csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{base}/admin/login/"},
        )
        index = client.get("/admin/")
        assert index.status_code == 200
        # A job of its own for its page (the tests of this module may run in any order, or apart).
        created = httpx.post(
            f"{base}/{PREFIX}api/jobs/",
            json={"type": "shop-restock", "params": {}},
            headers={"Authorization": "Token " + _token(base)},
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        pages = {"/admin/jobs/job/", f"/admin/jobs/job/{job_id}/change/"}
        for link in re.findall(r'href="(/admin/[^"]*(?:monitor|analytics)/)"', index.text):
            pages.add(link)
        assert any("monitor" in page for page in pages), "the admin index links to the monitor"
        statics: set[str] = set()
        for page in sorted(pages):
            response = client.get(page)
            assert response.status_code == 200, (page, response.text[:2000])
            statics |= set(re.findall(r'(?:src|href)="/static/([^"?]+)', response.text))
    assert any(name.endswith("admin.css") for name in statics)
    for name in sorted(statics):
        out = run(*host["manage"], "findstatic", "--verbosity", "0", name, cwd=host["site"], env=host["env"])
        assert out.strip(), f"static file {name} not found"


def _token(base: str) -> str:
    return str(
        httpx.post(
            f"{base}/{PREFIX}api/auth/token/", json={"username": "owner", "password": "a-long-host-password"}
        ).json()["token"]
    )
