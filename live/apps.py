from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "live"
    verbose_name = "Live updates"

    def ready(self) -> None:
        from django.conf import settings

        from jobs.duties import register_background_duty
        from live.relay import start_relay_thread

        # With Redis the relay (event log -> channel layer) runs in the monitor; on the
        # embedded default it runs inside the web process (live.relay.relay_in_web).
        register_background_duty("relay", start=start_relay_thread, enabled=lambda: bool(settings.REDIS_URL))
