"""Shared fixtures: users, API clients, real worker processes, service checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("JOBADMIN_REQUIRE_SERVICES") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the service-backed configuration is mandatory: fail, never skip, without it."""
    if not REQUIRE_SERVICES:
        return
    problems = []
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://", "pgsql://")):
        problems.append("DATABASE_URL must point at PostgreSQL")
    if not os.environ.get("REDIS_URL"):
        problems.append("REDIS_URL must be set")
    else:
        import redis

        try:
            redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis at REDIS_URL is unreachable: {exc}")
    if problems:
        pytest.exit("JOBADMIN_REQUIRE_SERVICES=1 but " + "; ".join(problems), returncode=3)


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_after_run() -> Iterator[None]:
    """Leave nothing behind in Redis: every key of this run carries its run tag."""
    yield
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        tag = os.environ["JOBADMIN_TEST_RUN"]
        for key in client.scan_iter(match=f"*{tag}*", count=1000):
            client.delete(key)


@pytest.fixture(autouse=True)
def _forget_database_failures() -> Iterator[None]:
    """Processes a test cut off from the database are named in health for a while
    (``jobs.outage.note_database_failure``, and the workers' own records on the broker,
    ``jobs.worker_reports``, for a minute): not in the next test's (CI: a test that expected one
    refused worker counted another test's too)."""
    yield
    if settings.REDIS_URL:
        import redis
        from django.core.cache import cache
        from django_q.conf import Conf

        from jobs.outage import REFUSED_CACHE_KEY

        cache.delete(REFUSED_CACHE_KEY)
        try:  # the shared Redis itself, whatever broker the test patched in (or stopped)
            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
            for key in client.scan_iter(match=f"{Conf.Q_STAT}-db:*", count=1000):
                client.delete(key)
        except Exception:  # noqa: BLE001 - a Redis stopped by the test, or its name lookup patched
            pass


@pytest.fixture(scope="session", autouse=True)
def _clean_media_after_run() -> Iterator[None]:
    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture
def requires_redis() -> None:
    if not settings.REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("REDIS_URL is required in this run")
        pytest.skip("REDIS_URL is not set (CI sets it)")


@pytest.fixture
def user(db: Any) -> Any:
    return UserFactory()


@pytest.fixture
def other_user(db: Any) -> Any:
    return UserFactory()


# What an operator is given in the admin: see and act on every job, pause queues, handle alerts
# (docs/security.md). ``is_staff`` alone grants nothing but the admin's login.
OPERATOR_PERMISSIONS = (
    "jobs.view_job",
    "jobs.change_job",
    "jobs.pause_queue",
    "monitoring.view_alert",
    "monitoring.change_alert",
)


def grant(user: Any, *perms: str) -> Any:
    """``user`` with ``perms`` added, fetched again (Django caches permissions per instance)."""
    from django.contrib.auth.models import Permission

    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def staff_user(db: Any) -> Any:
    """A staff member with the operator's permissions."""
    return grant(UserFactory(is_staff=True), *OPERATOR_PERMISSIONS)


@pytest.fixture
def bare_staff(db: Any) -> Any:
    """A staff member without any permission."""
    return UserFactory(is_staff=True)


@pytest.fixture
def superuser(db: Any) -> Any:
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def api_client() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


def child_env(**extra: str | None) -> dict[str, str]:
    """Environment for a process that must share this test run's database and Redis keys.

    ``NAME=None`` removes a variable, so the child gets the setting's default.
    """
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["JOBADMIN_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Processes:
    """Real processes started by a test, stopped (and reaped) when it ends."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.since = time.time()

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "proc") -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}-{len(self.procs)}.log"
        handle = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env or child_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((proc, log))
        return proc

    def qcluster(self, **extra_env: str | None) -> subprocess.Popen[bytes]:
        proc = self.start("manage.py", "qcluster", env=child_env(**extra_env), name="qcluster")
        wait_for(
            lambda: b"running" in self.log_of(proc).lower() or proc.poll() is not None,
            timeout=30,
            message="qcluster did not start",
        )
        assert proc.poll() is None, self.log_of(proc).decode(errors="replace")
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> bytes:
        for candidate, log in self.procs:
            if candidate is proc:
                return log.read_bytes()
        raise KeyError(proc)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        # The signal goes to the main process, which stops its cluster in order (a qcluster's
        # workers suspend their jobs, see jobs.shutdown); SIGKILL to the group is the backstop.
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_all(self) -> None:
        for proc, _ in reversed(self.procs):
            self.stop(proc)
        self.stop_strays()

    def stop_strays(self) -> None:
        """Whatever this run's tag still names that a process of this test started outside the
        groups ``stop`` ends: ``runall`` starts each child in a session of its own, and a child
        that a test left shutting down would go on reading this run's wake-ups in the next test
        (seen: a wake-up count off by two). They are killed, and named in a warning."""
        import warnings

        import psutil

        tag, me = os.environ["JOBADMIN_TEST_RUN"], os.getpid()
        strays = []
        for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid == me or proc.info["create_time"] < self.since - 1:
                    continue
                if proc.environ().get("JOBADMIN_TEST_RUN") == tag and proc.status() != psutil.STATUS_ZOMBIE:
                    strays.append(proc)
        if not strays:
            return
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(strays, timeout=10)
        names = "; ".join(f"{p.pid} {' '.join((p.info['cmdline'] or [])[:4])}" for p in strays)
        warnings.warn(f"a test left {len(strays)} process(es) running, now killed: {names}", stacklevel=1)

    def post_mortem(self) -> str:
        """What a failed test needs to be understood: every live process's thread stacks
        (SIGUSR1: tests/settings.py registers faulthandler), the end of each log,
        and, on SQLite, which processes hold the database file open."""
        import psutil

        for proc, _ in self.procs:
            if proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(proc.pid)
                # One at a time: the processes of a group write to one log.
                for each in [main, *main.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        each.send_signal(signal.SIGUSR1)
                        time.sleep(0.3)
        parts = [
            f"--- {log.name} (pid {proc.pid}, exit {proc.poll()}) ---\n"
            + log.read_bytes()[-40000:].decode(errors="replace")
            for proc, log in self.procs
        ]
        name = str(connection.settings_dict["NAME"])
        if connection.vendor == "sqlite" and shutil.which("lsof"):
            files = [name, f"{name}-wal", f"{name}-shm"]
            holders = subprocess.run(["lsof", *files], capture_output=True, text=True, check=False).stdout
            parts.append(f"--- lsof of the database ---\n{holders}")
        return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that started processes reports their stacks and logs (while they still run)."""
    report = yield
    procs = getattr(item, "funcargs", {}).get("processes")
    if report.failed and call.when == "call" and isinstance(procs, Processes) and procs.procs:
        report.sections.append(("processes", procs.post_mortem()))
    return report


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def test_job_types() -> Iterator[None]:
    """The throwaway types of tests/jobtypes, here and (with JOBADMIN_TEST_JOBTYPES=1) in workers."""
    from tests.jobtypes.jobs import registered

    with registered():
        yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout: float = 20, interval: float = 0.05, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)
