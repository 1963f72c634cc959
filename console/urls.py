"""Staff pages beside the model admin, mounted under ``/admin/`` ahead of the admin site's own URLs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import URLPattern, path

from console.views import analytics_view, monitor_state_view, monitor_view, queue_action_view


def _wrap(view: Any) -> Any:
    return admin.site.admin_view(view)


urlpatterns: list[URLPattern] = [
    path("monitor/", _wrap(monitor_view), name="jobadmin-monitor"),
    path("monitor/state/", _wrap(monitor_state_view), name="jobadmin-monitor-state"),
    path(
        "monitor/queues/<str:name>/pause/", _wrap(queue_action_view), {"action": "pause"}, name="jobadmin-queue-pause"
    ),
    path(
        "monitor/queues/<str:name>/resume/",
        _wrap(queue_action_view),
        {"action": "resume"},
        name="jobadmin-queue-resume",
    ),
    path("analytics/", _wrap(analytics_view), name="jobadmin-analytics"),
]
