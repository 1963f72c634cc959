"""The monitor's duties: what ``manage.py monitor`` runs, registered by the app that owns it.

Each app registers its duties in ``AppConfig.ready()``: the engine its safety net (the
dispatch tick and the stall sweep), ``monitoring`` its metric samples, statistics folds
and alert rules, ``live`` its relay. The monitor command names none of them: each loop
turn it runs, in registration order, every periodic duty whose interval has passed, and it
starts every background duty once. A duty that raises is reported and runs again at its
next turn; one failing duty never stops another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError


@dataclass(frozen=True)
class Duty:
    """Periodic work: ``run(now)`` every ``interval()`` seconds (read when the loop starts)."""

    name: str
    run: Callable[[datetime], Any]
    interval: Callable[[], float]
    # Called once when the monitor stops (e.g. to drain a notifier pool).
    stop: Callable[[], None] | None = None


# ``start(leading)`` starts the work and returns what stops it; the work checks
# ``leading()`` before each action that only the leader may take.
BackgroundStart = Callable[[Callable[[], bool]], Callable[[], None]]


@dataclass(frozen=True)
class BackgroundDuty:
    """Work with a life of its own (a thread), started each time the monitor starts leading
    and stopped when it stops leading."""

    name: str
    start: BackgroundStart
    enabled: Callable[[], bool]


_periodic: dict[str, Duty] = {}
_background: dict[str, BackgroundDuty] = {}


def register_duty(
    name: str,
    *,
    run: Callable[[datetime], Any],
    interval: Callable[[], float],
    stop: Callable[[], None] | None = None,
) -> None:
    """Register (or replace, by name) a periodic duty of the monitor."""
    _periodic[name] = Duty(name=name, run=run, interval=interval, stop=stop)


def register_background_duty(name: str, *, start: BackgroundStart, enabled: Callable[[], bool]) -> None:
    """Register (or replace, by name) a duty that the monitor starts once, when ``enabled()``."""
    _background[name] = BackgroundDuty(name=name, start=start, enabled=enabled)


def periodic_duties() -> list[Duty]:
    return list(_periodic.values())


def background_duties() -> list[BackgroundDuty]:
    return list(_background.values())


class DispatchDuty:
    """The engine's safety net, each monitor tick: wake-ups the broker lost or that a retry's
    back-off delayed, then the stall sweep, so that no job stays queued or running forever.

    The sweep tells a worker that could not write from one that died: a worker that lost
    the database writes its heartbeat within two heartbeats (and a retry) of the database
    answering again (jobs.outage). So the sweep waits that long after the monitor itself
    reaches the database again (or first reaches it), and a heartbeat missed while the
    database was out never counts against a live worker.
    """

    def __init__(self) -> None:
        self.since: datetime | None = None
        self.answering_since: float | None = None  # monotonic; None while the database is out

    def __call__(self, now: datetime) -> None:
        from jobs import outage, services

        try:
            services.dispatch_tick(since=self.since, now=now)
        except DatabaseError as exc:
            if outage.is_outage(exc):
                self.answering_since = None
            raise
        self.since = now
        clock = time.monotonic()
        if self.answering_since is None:
            self.answering_since = clock
        settle = 2 * settings.JOBADMIN_HEARTBEAT_INTERVAL + outage.RETRY_EVERY
        if clock - self.answering_since >= settle:
            services.jobs_cleanup_stalled(now=now)
