"""The staff pages on the project's own admin site (DESIGN "In your own project").

``register(site)`` adds the monitor and analytics to ``site``: their URLs under the site's own
prefix, ahead of its model URLs (``/admin/monitor/``, named ``admin:jobadmin-monitor``), wrapped
in ``site.admin_view`` (staff login, no caching, CSRF); and links to them beside the job list
in the site's app list, which the stock index and the navigation sidebar show. ``console``'s
AppConfig registers them on ``django.contrib.admin.site``; a project with its own AdminSite
calls ``register`` on it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from jobs import policy

PAGES = (("Live monitor", "Monitor", "jobadmin-monitor"), ("Analytics", "Analytics", "jobadmin-analytics"))


def register(site: admin.AdminSite) -> None:
    if getattr(site, "_jobadmin_console", False):
        return
    site._jobadmin_console = True  # type: ignore[attr-defined]
    model_urls = site.get_urls

    def get_urls() -> list[Any]:
        from console.urls import patterns

        return [*patterns(site), *model_urls()]

    model_app_list = site.get_app_list

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        app_list: list[dict[str, Any]] = model_app_list(request, app_label)
        if not policy.may_see_statistics(request.user):
            return app_list
        for app in app_list:
            if app["app_label"] == "jobs":
                app["models"] = [*app["models"], *_links(site)]
        return app_list

    site.get_urls = get_urls  # type: ignore[method-assign]
    site.get_app_list = get_app_list  # type: ignore[method-assign]


def _links(site: admin.AdminSite) -> list[dict[str, Any]]:
    links = []
    for name, object_name, url_name in PAGES:
        try:
            url = reverse(f"{site.name}:{url_name}", current_app=site.name)
        except NoReverseMatch:
            continue
        links.append(
            {
                "name": name,
                "object_name": object_name,
                "admin_url": url,
                "add_url": None,
                "view_only": True,
                "perms": {"view": True},
            }
        )
    return links
