from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Staff console"

    def ready(self) -> None:
        from django.contrib import admin

        from console.admin_site import register

        # The monitor and analytics on the project's own admin site (console.admin_site).
        register(admin.site)
