from django.apps import AppConfig


class JobAdminConfig(AppConfig):
    """The composition root as an app, so that its process commands (``runall``, ``monitor``) are found."""

    name = "jobadmin"
    verbose_name = "JobAdmin"
