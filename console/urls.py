"""The staff pages beside the model admin, as URLs of an admin site (``console.admin_site``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import URLPattern, path

from console.views import analytics_view, monitor_state_view, monitor_view, queue_action_view


def patterns(site: admin.AdminSite) -> list[URLPattern]:
    """The monitor and analytics under ``site``'s prefix, behind its staff login."""

    def wrap(view: Any) -> Any:
        return site.admin_view(view)

    return [
        path("monitor/", wrap(monitor_view), name="jobadmin-monitor"),
        path("monitor/state/", wrap(monitor_state_view), name="jobadmin-monitor-state"),
        path(
            "monitor/queues/<str:name>/pause/",
            wrap(queue_action_view),
            {"action": "pause"},
            name="jobadmin-queue-pause",
        ),
        path(
            "monitor/queues/<str:name>/resume/",
            wrap(queue_action_view),
            {"action": "resume"},
            name="jobadmin-queue-resume",
        ),
        path("analytics/", wrap(analytics_view), name="jobadmin-analytics"),
    ]
