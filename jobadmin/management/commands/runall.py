"""``python manage.py runall``: web server, worker cluster and monitor together (``make run``).

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too. If
``runall`` itself is killed (SIGKILL, the OOM killer), its children follow it: each is started
with a parent-death signal (Linux's ``PR_SET_PDEATHSIG``: SIGTERM when ``runall`` dies), so the
cluster suspends its jobs and everything exits as on Ctrl-C. And the next ``runall`` finds the
processes of an earlier run of the same data folder (``runall.json`` there) that are still
stopping, waits for them (SIGKILL after the grace), and refuses a port that something else holds
with a message that names it, instead of daphne's ``Address already in use``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel for SIGTERM when ``parent`` dies (Linux only; None elsewhere).

    Runs in the child between fork and exec; the signal survives the exec. If the parent died
    before the request took hold, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def run_file() -> Path:
    return Path(settings.JOBADMIN_DATA_DIR) / "runall.json"


def leftovers(path: Path, *, started_before: float) -> list[psutil.Process]:
    """The live processes of the run recorded in ``path``: members of its children's process groups
    (each child leads one, the cluster's workers included) started before ``started_before``."""
    try:
        record = json.loads(path.read_text())
        groups = {int(pid) for pid in record.get("groups", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    found = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["create_time"] >= started_before:
                continue
            if os.getpgid(proc.info["pid"]) in groups:
                found.append(proc)
    return found


def stop_leftovers(path: Path, *, started_before: float, grace: float, say: Callable[[str], None]) -> int:
    """Wait for an earlier run's processes to exit (SIGTERM, then SIGKILL after ``grace``); how many there were."""
    procs = leftovers(path, started_before=started_before)
    if not procs:
        return 0
    say(f"Waiting for {len(procs)} process(es) of the previous run to stop: {', '.join(str(p.pid) for p in procs)}")
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()  # already sent by its parent-death signal to the group leaders; the others too
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def port_holder(host: str, port: int) -> str | None:
    """None if ``host:port`` can be listened on; otherwise who holds it, as well as can be told."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as daphne (Twisted) binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            return None
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"{reason}: pid {conn.pid} ({' '.join(proc.cmdline())[:200]})"
    return reason


class Command(BaseCommand):
    help = "Run daphne, the django-q2 cluster and the monitor loop together."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=settings.JOBADMIN_RUNALL_HOST)
        parser.add_argument("--port", type=int, default=settings.JOBADMIN_RUNALL_PORT)

    def handle(self, *args: Any, **options: Any) -> None:
        # The project's own settings and ASGI application (a host's too): manage.py put
        # DJANGO_SETTINGS_MODULE in the environment, which the children inherit.
        manage = [sys.executable, "-m", "django"]
        module, _, attribute = settings.ASGI_APPLICATION.rpartition(".")
        commands = {
            "web": [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                options["host"],
                "-p",
                str(options["port"]),
                f"{module}:{attribute}",
            ],
            "workers": [*manage, "qcluster"],
            "monitor": [*manage, "monitor"],
        }
        record = run_file()
        me = psutil.Process()
        stop_leftovers(
            record,
            started_before=me.create_time(),
            grace=settings.JOBADMIN_SHUTDOWN_GRACE + 10,
            say=lambda text: self.stdout.write(text),
        )
        holder = port_holder(options["host"], options["port"])
        if holder is not None:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {holder}. "
                "Stop that process, or choose another port (PORT=… make run)."
            )
        procs: dict[str, subprocess.Popen[bytes]] = {}
        stopping = {"now": False}

        def on_signal(signum: int, frame: Any) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        preexec = die_with_parent(os.getpid())
        for name, command in commands.items():
            # Own process group: Ctrl-C reaches only us, and we stop the children in order.
            procs[name] = subprocess.Popen(command, start_new_session=True, preexec_fn=preexec)  # noqa: PLW1509
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"pid": os.getpid(), "groups": [proc.pid for proc in procs.values()]}))
        url = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            f"\nJobAdmin is starting at {url}/admin/  (API: {url}/api/, docs: {url}/api/docs/)\n"
            f"No user yet? In another terminal: .venv/bin/python manage.py createsuperuser\n"
            f"Ctrl-C stops the web server, the workers and the monitor.\n"
        )
        exit_code = 0
        while not stopping["now"]:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping everything.")
                    stopping["now"] = True
                    exit_code = 1
            time.sleep(0.2)
        self.stdout.write("Stopping...")
        # To each whole process group, as systemd would: the cluster's workers suspend their
        # jobs at the next checkpoint (jobs.shutdown) and nothing is left behind.
        for proc in procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + settings.JOBADMIN_SHUTDOWN_GRACE + 10
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # whatever of the group outlived the grace
            proc.wait()
        with contextlib.suppress(OSError):
            record.unlink()
        self.stdout.write("Stopped.")
        if exit_code:
            sys.exit(exit_code)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
