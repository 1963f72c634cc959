"""Staff pages beside the model admin: the live monitor and the analytics page.

They live under ``/admin/`` and are wrapped with ``admin.site.admin_view`` (staff login,
no caching, CSRF), mounted by ``console/urls.py`` (through ``jobadmin/urls.py``) ahead of the admin site's own URLs.
The monitor page renders the current state on the server, then the browser keeps it live
from the websocket (``job-update``, ``job-stats``, ``job-alert``) and polls
``monitor/state/`` for queue figures and the stalled count.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from jobs import policy, selectors, services
from jobs.events import job_snapshot
from jobs.exceptions import JobError
from jobs.models import ACTIVE_STATUSES, JobStatus, job_states
from jobs.selectors import (
    active_in,
    job_counts_by_status,
    job_long_running_count,
    queue_overview,
    stalled_jobs_queryset,
)
from monitoring.analytics import GRADE_RULES, analytics_types
from monitoring.models import OPEN_STATUSES, Alert
from monitoring.serializers import AlertSerializer
from monitoring.stats import resolve_window

# The monitor renders at most this many active jobs; the rest are counted.
MONITOR_MAX_JOBS = 500
MONITOR_MAX_ALERTS = 100
FEED_SIZE = 20
ANALYTICS_RANGES = ["1h", "1d", "7d", "30d", "all"]
# (key, title) of every chart on the analytics page; static/jobadmin/admin/analytics.js draws each key.
ANALYTICS_CHARTS = [
    ("status", "Status distribution"),
    ("daily", "Completed vs failed, last 7 days"),
    ("hourly", "Jobs per hour, last 24 hours"),
    ("types", "Jobs per type and success rate"),
    ("throughput", "Throughput (completed per hour)"),
    ("duration", "Duration (mean run time)"),
    ("queue_wait", "Queue wait (mean)"),
    ("system", "CPU and memory"),
    ("queue_depth", "Queue depth and running jobs"),
    ("users", "Top users"),
    ("peak_hours", "Peak hours of the day"),
]
# (key in GET /api/analytics/types/, heading) of the analytics page's health table, whose script
# (analytics.js, HEALTH_CELLS) formats each key; the last failure follows them.
HEALTH_COLUMNS = [
    ("type", "Type"),
    ("grade", "Grade"),
    ("total", "Runs"),
    ("success_rate", "Success rate"),
    ("duration_mean", "Mean duration"),
    ("duration_p95", "p95 duration"),
    ("throughput_per_hour", "Completed per hour"),
    ("items_per_second", "Items a second"),
]
# The window of the grade the monitor shows beside each job: its type's over the last day (the
# analytics page's default range), refreshed by the page from GET /api/analytics/types/.
MONITOR_GRADE_RANGE = "1d"
# The charts with a time axis: their title names its zone (the viewer's; "daily": the server's days).
TIMED_CHARTS = {"daily", "hourly", "throughput", "duration", "queue_wait", "system", "queue_depth", "peak_hours"}


def _may_see_system(request: HttpRequest) -> None:
    """The monitor and analytics show every user's jobs: ``jobs.view_job`` (the admin wrapper has
    already required a staff login)."""
    if not policy.may_see_statistics(request.user):
        raise PermissionDenied(policy.missing(policy.VIEW_JOBS, "This page"))


def queue_rows() -> list[dict[str, Any]]:
    """Depth (queued), running, capacity and utilisation (in percent) of every queue."""
    return [{**row, "utilisation": round(100 * row["utilisation"])} for row in queue_overview()]


def monitor_state() -> dict[str, Any]:
    """The figures the monitor polls: queues, stalled and long-running counts."""
    counts = job_counts_by_status((JobStatus.QUEUED, *ACTIVE_STATUSES))
    return {
        "queues": queue_rows(),
        "stalled": stalled_jobs_queryset().count(),
        "long_running": job_long_running_count(),
        "active": active_in(counts),
        "queued": counts[JobStatus.QUEUED],
        "at": timezone.now().isoformat(),
    }


def open_alerts(user: Any) -> list[dict[str, Any]]:
    """The alerts open or acknowledged now, newest first, as ``GET /api/alerts/`` shows them; none for
    who may not see alerts (``monitoring.view_alert``)."""
    if not policy.may_see_alerts(user):
        return []
    rows = (
        Alert.objects.filter(status__in=OPEN_STATUSES)
        .select_related("rule", "acknowledged_by", "resolved_by")
        .order_by("-created_at", "-id")[:MONITOR_MAX_ALERTS]
    )
    return [dict(AlertSerializer(alert).data) for alert in rows]


def type_grades(range_name: str) -> dict[str, str | None]:
    """Each job type's health grade over the range, as ``GET /api/analytics/types/`` gives it."""
    window = resolve_window(range_name=range_name)
    return {row["type"]: row["grade"] for row in analytics_types(window=window)}


def monitor_view(request: HttpRequest) -> HttpResponse:
    _may_see_system(request)
    # Running first, then paused, then queued, oldest first; one indexed query per status.
    active = selectors.jobs_live_oldest_first(limit=MONITOR_MAX_JOBS)
    feed = selectors.jobs_recently_finished(limit=FEED_SIZE)
    state = monitor_state()
    context = {
        **admin.site.each_context(request),
        "title": "Live monitor",
        "jobs_initial": [job_snapshot(job) for job in active],
        "feed_initial": [job_snapshot(job) for job in feed],
        # The grade of each job's type comes beside the job-update, never inside it: the message
        # schema stays as it is, and the page refreshes the grades from the API every minute.
        "type_grades": type_grades(MONITOR_GRADE_RANGE),
        "grade_range": MONITOR_GRADE_RANGE,
        "job_states": job_states(),
        "state": state,
        "stall_threshold": settings.JOBADMIN_STALL_THRESHOLD,
        # The page is current up to this event; the socket replays from here.
        "latest_event_id": selectors.job_event_latest_id(),
        "alerts_initial": open_alerts(request.user),
        "may_see_alerts": policy.may_see_alerts(request.user),
        "may_change_alerts": policy.may_change_alerts(request.user),
        # The API's acknowledge and resolve URLs of alert 0: the page puts each alert's id in.
        "alert_acknowledge_url": reverse("alert-acknowledge", kwargs={"pk": 0}),
        "alert_resolve_url": reverse("alert-resolve", kwargs={"pk": 0}),
    }
    return TemplateResponse(request, "admin/jobadmin/monitor.html", context)


def monitor_state_view(request: HttpRequest) -> HttpResponse:
    _may_see_system(request)
    return JsonResponse(monitor_state())


def queue_action_view(request: HttpRequest, name: str, action: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    if not policy.may_pause_queues(request.user):
        raise PermissionDenied(policy.missing(policy.PAUSE_QUEUE, "Pausing and resuming queues"))
    service = services.queue_pause if action == "pause" else services.queue_resume
    try:
        service(name=name, actor=request.user)
    except JobError as exc:
        messages.warning(request, f"Queue {name}: {exc}")
    else:
        messages.success(request, f"Queue {name}: {'paused' if action == 'pause' else 'resumed'}.")
    return HttpResponseRedirect(reverse("admin:jobadmin-monitor"))


def analytics_view(request: HttpRequest) -> HttpResponse:
    _may_see_system(request)
    selected = request.GET.get("range", "1d")
    if selected not in ANALYTICS_RANGES:
        selected = "1d"
    context = {
        **admin.site.each_context(request),
        "title": "Analytics",
        "ranges": ANALYTICS_RANGES,
        "selected_range": selected,
        "charts": ANALYTICS_CHARTS,
        "health_columns": HEALTH_COLUMNS,
        "grade_rules": GRADE_RULES,
        "timed_charts": TIMED_CHARTS,
        # The daily buckets are days of the server's zone (the API's); the page says so.
        "server_time_zone": timezone.get_current_timezone_name(),
    }
    return TemplateResponse(request, "admin/jobadmin/analytics.html", context)
