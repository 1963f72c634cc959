from typing import Any

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from django.conf import settings

        from jobs.duties import register_duty
        from monitoring import duties
        from monitoring.health import monitor_heartbeat
        from monitoring.metrics import metrics_sample

        def metrics(now: Any) -> None:
            metrics_sample(now=now)

        def every_alerts_interval() -> float:
            return settings.JOBADMIN_ALERTS_INTERVAL

        register_duty("metrics", run=metrics, interval=lambda: settings.JOBADMIN_METRICS_INTERVAL)
        register_duty("heartbeat", run=monitor_heartbeat, interval=every_alerts_interval)
        register_duty("statistics", run=duties.statistics_fold, interval=every_alerts_interval)
        register_duty("alerts", run=duties.alerts_run, interval=every_alerts_interval, stop=duties.notifiers_drain)

        # Retention: the scheduled purge-history job also purges old metric samples and
        # resolved alerts, in batches (jobs.retention never imports monitoring).
        from jobs.retention import register_purger
        from monitoring.alerts import alerts_purge_batch
        from monitoring.metrics import metrics_purge_batch
        from monitoring.rollup import jobs_purge_rebuild_batch

        register_purger("metrics", lambda batch: metrics_purge_batch(batch))
        register_purger("alerts", alerts_purge_batch)
        # Deleted jobs leave no trace for the statistics fold: ask for a full rebuild.
        register_purger("stats-rebuild", jobs_purge_rebuild_batch)
