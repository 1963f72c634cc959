"""``python manage.py monitor``: the one monitor loop.

Each tick (``JOBADMIN_DISPATCH_INTERVAL``) it sends the dispatcher's safety-net wake-ups
and settles stalled jobs; every ``JOBADMIN_METRICS_INTERVAL`` it stores a metric sample;
every ``JOBADMIN_ALERTS_INTERVAL`` it folds job changes into the statistics buckets
(``monitoring.rollup``), evaluates the alert rules and reports its own heartbeat (read by
``/api/health/``). E-mail and webhook notifications run on a small
thread pool, so a slow receiver never holds up the loop. Exactly one monitor runs: a
second one waits for the first one's lock.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from jobs import services
from monitoring.alerts import alert_notify_in_thread, alerts_disabled_resolve, alerts_evaluate
from monitoring.health import monitor_heartbeat
from monitoring.metrics import metrics_sample
from monitoring.models import Alert
from monitoring.relay import start_relay_thread
from monitoring.rollup import rollup_fold, rollup_rebuild_due, rollup_reconcile
from monitoring.singleton import monitor_lock


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
    help = "Run the monitor loop (dispatch safety net, stalled jobs, metrics, alert rules)."

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
            if settings.REDIS_URL and not options["once"]:  # with Redis, the live-updates relay lives here
                start_relay_thread()
            notifier_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alert-notify")

            def notifier(alert: Alert) -> None:
                notifier_pool.submit(alert_notify_in_thread, alert.pk)

            since: datetime | None = None
            sampling = Every(settings.JOBADMIN_METRICS_INTERVAL)
            alerting = Every(settings.JOBADMIN_ALERTS_INTERVAL)
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
                if sampling.due(started):
                    self._guarded("sample", metrics_sample, now=now)
                if alerting.due(started):
                    self._guarded("heartbeat", monitor_heartbeat, now)
                    self._guarded("statistics", self._rollup, now)
                    self._guarded("alerts", self._alerts, now, notifier)
                if options["once"]:
                    break
                time.sleep(max(0.0, settings.JOBADMIN_DISPATCH_INTERVAL - (time.monotonic() - started)))
            notifier_pool.shutdown(wait=True, cancel_futures=False)
        self.stdout.write("monitor: stopped")

    def _rollup(self, now: datetime) -> None:
        if rollup_rebuild_due(now):
            rollup_reconcile(now=now)
        else:
            rollup_fold(now=now)

    def _alerts(self, now: datetime, notifier: Callable[[Alert], None]) -> None:
        result = alerts_evaluate(now=now, notifier=notifier)
        alerts_disabled_resolve(now=now)
        for alert in result.opened:
            self.stdout.write(f"monitor: alert {alert.pk} opened: {alert.message}")

    def _guarded(self, what: str, step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            step(*args, **kwargs)
        except Exception as exc:  # metrics or alerts failing must not stop the dispatcher
            self.stderr.write(f"monitor: {what} failed: {exc!r}")
            close_old_connections()
