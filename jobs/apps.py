from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Registering the built-in job types is the one import-time effect of this app.
        from jobs import job_types  # noqa: F401
        from jobs.registry import autodiscover

        autodiscover()
