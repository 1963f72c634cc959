"""``python manage.py monitor``: the one monitor loop.

It runs the duties that the apps register (``jobs.duties``): each loop turn
(``JOBADMIN_DISPATCH_INTERVAL``) every periodic duty whose interval has passed, in
registration order — the engine's dispatch tick and stall sweep every turn, monitoring's
metric samples, statistics and alert rules on their own intervals — and, once, every
background duty (with Redis, the live-updates relay). Exactly one monitor runs: a second
one waits for the first one's lock.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from jobadmin.singleton import monitor_lock
from jobs.duties import background_duties, periodic_duties


class Every:
    """True once per ``interval`` seconds (first call: True)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: float | None = None

    def due(self, now: float) -> bool:
        if self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


class Command(BaseCommand):
    help = "Run the monitor loop: the duties the apps register (dispatch safety net, stalled jobs, metrics, alerts)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Run every periodic duty once and exit.")

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
            if not options["once"]:
                for background in background_duties():
                    if background.enabled():
                        background.start()
            duties = periodic_duties()
            schedule = {duty.name: Every(duty.interval()) for duty in duties}
            while not stop["now"]:
                started = time.monotonic()
                now = timezone.now()
                for duty in duties:
                    if schedule[duty.name].due(started):
                        self._guarded(duty.name, duty.run, now)
                if options["once"]:
                    break
                time.sleep(max(0.0, settings.JOBADMIN_DISPATCH_INTERVAL - (time.monotonic() - started)))
            for duty in duties:
                if duty.stop is not None:
                    duty.stop()
        self.stdout.write("monitor: stopped")

    def _guarded(self, what: str, step: Callable[[datetime], Any], now: datetime) -> None:
        try:
            step(now)
        except Exception as exc:  # one failing duty must not stop the others, nor the loop
            self.stderr.write(f"monitor: {what} failed: {exc!r}")
            close_old_connections()
