from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from jobadmin.conf import apply_defaults, check_settings, setting_problems


class JobAdminConfig(AppConfig):
    """The composition root as an app: JobAdmin's settings defaults and their check, and the process
    commands (``runall``, ``monitor``).

    First of ``JOBADMIN_APPS``: its config is created before the other apps are imported, so the
    defaults are in place before django-q2 reads ``Q_CLUSTER`` and before any JobAdmin code runs.
    A bad value stops start-up right there (``ImproperlyConfigured``); the same rules run as the
    system check ``jobadmin.E001`` for settings changed later (``override_settings``).
    """

    name = "jobadmin"
    verbose_name = "JobAdmin"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        apply_defaults(settings)
        # A value that would break the apps while they load (a queue limit of 0, a timing that is a
        # string) stops every command here, with the same sentences as the system check.
        if problems := setting_problems(settings):
            raise ImproperlyConfigured("JobAdmin settings (jobadmin.E001):\n  " + "\n  ".join(problems))

    def ready(self) -> None:
        checks.register(check_settings)
