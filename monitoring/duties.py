"""Monitoring's duties in the monitor loop (registered in ``MonitoringConfig.ready``).

Every ``JOBADMIN_METRICS_INTERVAL`` a metric sample; every ``JOBADMIN_ALERTS_INTERVAL`` the
monitor's heartbeat (read by ``/api/health/``), the statistics fold (``monitoring.rollup``)
and the alert rules. E-mail and webhook notifications run on a small thread pool, so a
slow receiver never holds up the loop.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from monitoring.alerts import alert_notify_in_thread, alerts_disabled_resolve, alerts_evaluate
from monitoring.models import Alert
from monitoring.rollup import rollup_fold, rollup_rebuild_due, rollup_reconcile

logger = logging.getLogger(__name__)

_notifier_pool: ThreadPoolExecutor | None = None


def _notify(alert: Alert) -> None:
    global _notifier_pool
    if _notifier_pool is None:
        _notifier_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alert-notify")
    _notifier_pool.submit(alert_notify_in_thread, alert.pk)


def notifiers_drain() -> None:
    """When the monitor stops: let the notifications already handed over finish."""
    global _notifier_pool
    if _notifier_pool is not None:
        _notifier_pool.shutdown(wait=True, cancel_futures=False)
        _notifier_pool = None


def statistics_fold(now: datetime) -> None:
    if rollup_rebuild_due(now):
        rollup_reconcile(now=now)
    else:
        rollup_fold(now=now)


def alerts_run(now: datetime) -> None:
    result = alerts_evaluate(now=now, notifier=_notify)
    alerts_disabled_resolve(now=now)
    for alert in result.opened:
        logger.info("monitor: alert %s opened: %s", alert.pk, alert.message)
