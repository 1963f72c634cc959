"""``python manage.py monitor``: the one monitor loop.

It runs the duties that the apps register (``jobs.duties``): each loop turn
(``JOBADMIN_DISPATCH_INTERVAL``) every periodic duty whose interval has passed, in
registration order — the engine's dispatch tick and stall sweep every turn, monitoring's
metric samples, statistics and alert rules on their own intervals — and, once, every
background duty (with Redis, the live-updates relay). Exactly one monitor leads: a second
one waits for the lease (``jobadmin.singleton``) and takes over when the leader is gone; a
leader that is no longer sure of its lease stops every duty and waits again, and the
database writes of each duty commit only while its lease holds (``Lease.fence``).
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, transaction
from django.utils import timezone

from jobadmin.singleton import Lease, identity
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
        lease = Lease(log=self.stderr)
        # Leading, standing down when the lease is lost, waiting again: until told to stop.
        while lease.acquire(wait=lambda: not stop["now"]):
            try:
                self._lead(lease, stop, once=options["once"])
            finally:
                lease.release()
            if options["once"]:
                break
        self.stdout.write("monitor: stopped")

    def _lead(self, lease: Lease, stop: dict[str, bool], *, once: bool) -> None:
        """Run the duties while this process is sure it leads (checked before each one)."""
        self.stdout.write(f"monitor: running at {time.time():.3f} ({identity()})")
        stoppers: list[Callable[[], None]] = []
        if not once:
            for background in background_duties():
                if background.enabled():
                    stoppers.append(background.start(lease.sure))
        duties = periodic_duties()
        schedule = {duty.name: Every(duty.interval()) for duty in duties}
        try:
            while not stop["now"] and lease.sure():
                started = time.monotonic()
                now = timezone.now()
                for duty in duties:
                    if not lease.sure():
                        break
                    if schedule[duty.name].due(started):
                        lease.duty(True)
                        try:
                            self._guarded(duty.name, functools.partial(self._fenced, lease, duty.run), now)
                        finally:
                            lease.duty(False)
                if once:
                    break
                pause = settings.JOBADMIN_DISPATCH_INTERVAL - (time.monotonic() - started)
                while pause > 0 and not stop["now"] and lease.sure():
                    time.sleep(min(pause, 0.05))
                    pause -= 0.05
        finally:
            for stopper in stoppers:
                stopper()
            for duty in duties:
                if duty.stop is not None:
                    duty.stop()
            close_old_connections()
            self.stdout.write(f"monitor: stopped leading at {time.time():.3f}")

    @staticmethod
    def _fenced(lease: Lease, run: Callable[[datetime], Any], now: datetime) -> None:
        """Run a duty whose writes commit only while this monitor still holds the lease
        (``Lease.fence``: a deposed leader's are rolled back)."""
        if not lease.fenced():
            run(now)
            return
        with transaction.atomic():
            run(now)
            lease.fence()

    def _guarded(self, what: str, step: Callable[[datetime], Any], now: datetime) -> None:
        try:
            step(now)
        except Exception as exc:  # one failing duty must not stop the others, nor the loop
            self.stderr.write(f"monitor: {what} failed: {exc!r}")
            close_old_connections()
