"""``python manage.py monitor``: the one monitor loop.

Each tick it sends the dispatcher's safety-net wake-ups and settles stalled jobs.
Exactly one runs: a second one waits for the first one's lock.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from jobs import services
from monitoring.singleton import monitor_lock


class Command(BaseCommand):
    help = "Run the monitor loop (dispatch safety net, stalled jobs)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = {"now": False}

        def on_signal(signum: int, frame: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        with monitor_lock(wait=lambda: not stop["now"]) as held:
            if not held:
                return
            self.stdout.write("monitor: running")
            since: datetime | None = None
            while not stop["now"]:
                started = time.monotonic()
                now = timezone.now()
                try:
                    services.dispatch_tick(since=since, now=now)
                    services.jobs_cleanup_stalled(now=now)
                    since = now
                except Exception as exc:  # one bad tick must not end the loop
                    self.stderr.write(f"monitor: tick failed: {exc!r}")
                    close_old_connections()
                if options["once"]:
                    break
                time.sleep(max(0.0, settings.JOBADMIN_DISPATCH_INTERVAL - (time.monotonic() - started)))
        self.stdout.write("monitor: stopped")
