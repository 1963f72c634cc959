from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
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
