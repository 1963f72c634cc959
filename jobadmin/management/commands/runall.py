"""``python manage.py runall``: web server, worker cluster and monitor together (``make run``).

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


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
        procs: dict[str, subprocess.Popen[bytes]] = {}
        stopping = {"now": False}

        def on_signal(signum: int, frame: Any) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        for name, command in commands.items():
            # Own process group: Ctrl-C reaches only us, and we stop the children in order.
            procs[name] = subprocess.Popen(command, start_new_session=True)
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
        self.stdout.write("Stopped.")
        if exit_code:
            sys.exit(exit_code)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
