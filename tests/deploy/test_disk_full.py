"""A full disk is reported as a full disk (issue 21, items 4 and 5): the embedded default's SQLite
file on a small tmpfs of its own, a real daphne serving it, the disk filled to the last byte.

The API answers 503 ``disk_full`` (not "try again shortly"), health calls the database critical
with the reason while still answering 200 (reads work), and once space is freed the same request
goes through. Needs root (``mount -t tmpfs``), as the test machine and CI run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, child_env, free_port, wait_for

pytestmark = pytest.mark.processes


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def serves(port: int, token: str) -> bool:
    try:
        return call(port, "GET", "/api/health/", token)[0] == 200
    except urllib.error.URLError:
        return False


def fill(disk: Path) -> Path:
    """Write a file until the file system is full, to the last block; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1 << 9):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_503_disk_full_and_health_says_so_then_writes_resume(
    small_disk: Path, tmp_path: Path, processes: Any
) -> None:
    database = small_disk / "jobadmin.sqlite3"
    env = child_env(
        DATABASE_URL=None,
        REDIS_URL=None,
        JOBADMIN_REQUIRE_SERVICES=None,
        JOBADMIN_DB_NAME=str(database),
        JOBADMIN_DATA_DIR=str(tmp_path / "data"),
    )
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput"], ["createcachetable"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True, capture_output=True)
    made = (
        "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
        "u = User.objects.create_superuser('root', 'root@example.com', 'pw'); print(Token.objects.create(user=u).key)"
    )
    token = subprocess.run(
        [*manage, "shell", "-c", made], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.split()[-1]  # after the shell's own "… objects imported automatically"
    port = free_port()
    processes.start("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "jobadmin.asgi:application", env=env)
    wait_for(lambda: serves(port, token), timeout=60, message="daphne never served")
    job = {"type": "demo", "params": {"items": 1, "delay_ms": 0}}
    assert call(port, "POST", "/api/jobs/", token, job)[0] == 201

    filler = fill(small_disk)
    # SQLite reuses the space its files already have: the writes fail once they need more.
    for _ in range(2000):
        status, headers, body = call(port, "POST", "/api/jobs/", token, job)
        if status != 201:
            break
    assert status == 503, body
    assert body["code"] == "disk_full", body
    assert "disk is full" in body["detail"]
    assert int(headers["Retry-After"]) >= 30

    status, _, report = call(port, "GET", "/api/health/", token)
    assert status == 200, "reads still work: a load balancer keeps the node"
    database = report["checks"]["database"]
    assert database["status"] == "critical"
    assert database["disk_full"] is True
    assert "disk full" in database["reason"]
    assert any(reason.startswith("database: disk full") for reason in report["reasons"])

    filler.unlink()
    assert call(port, "POST", "/api/jobs/", token, job)[0] == 201
