from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.conf import settings

        # Registering the built-in job types is the one import-time effect of this app.
        from jobs import bridge, job_types  # noqa: F401
        from jobs.duties import DispatchDuty, register_duty
        from jobs.registry import autodiscover

        autodiscover()
        # Each django-q2 worker process stops gracefully on SIGTERM (jobs.shutdown).
        from django_q.signals import post_spawn

        from jobs import shutdown, signing_key

        post_spawn.connect(shutdown.install, dispatch_uid="jobadmin-graceful-stop")
        shutdown.patch_cluster()
        # A cluster that starts settles the jobs of this host's workers that died with a killed run.
        shutdown.patch_cluster_start()
        # A cluster with another DJANGO_SECRET_KEY is visible to health and logs what it drops.
        signing_key.patch_cluster()
        _ask_the_policy_about_cors()
        register_duty("dispatch", run=DispatchDuty(), interval=lambda: settings.JOBADMIN_DISPATCH_INTERVAL)
        register_duty("schedules", run=_fire_schedules, interval=lambda: settings.JOBADMIN_SCHEDULE_INTERVAL)
        # /metrics' counters: the increments committed since the last turn, into their totals.
        from jobs.counters import counters_fold

        register_duty("counters", run=lambda now: counters_fold(), interval=lambda: settings.JOBADMIN_DISPATCH_INTERVAL)
        from django.core import checks

        from jobs.limits import check_limits
        from jobs.outage import check_grace

        checks.register(check_grace)
        from jobs.services.claim import check_user_queue_share

        checks.register(check_user_queue_share)
        checks.register(check_limits)


def _ask_the_policy_about_cors() -> None:
    """django-cors-headers adds its headers where ``jobs.policy.cors_allowed`` says so."""
    from typing import Any

    from corsheaders.signals import check_request_enabled

    from jobs import policy

    def enabled(sender: Any, request: Any, **kwargs: Any) -> bool:
        return policy.cors_allowed(request)

    check_request_enabled.connect(enabled, weak=False, dispatch_uid="jobs.policy.cors_allowed")


def _fire_schedules(now: Any) -> None:
    from jobs import services

    services.schedules_fire(now)
