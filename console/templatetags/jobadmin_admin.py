"""Template tags for the admin index: job counts at a glance (health is fetched live)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from jobs import policy
from jobs.models import JobStatus
from jobs.selectors import (
    active_in,
    job_counts_by_status,
    jobs_created_since,
    jobs_finished_count,
    stalled_jobs_queryset,
)

register = template.Library()


@register.simple_tag(takes_context=True)
def jobadmin_overview(context: Any) -> dict[str, Any] | None:
    """Counts by status, today's totals and the stalled count, each from an indexed query;
    None for a staff member who may not see everyone's jobs (``jobs.view_job``)."""
    request = context.get("request")
    if request is None or not policy.may_see_statistics(request.user):
        return None
    by_status = job_counts_by_status()
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "statuses": [(s.value, s.label, by_status.get(s.value, 0)) for s in JobStatus],
        "active": active_in(by_status),
        "queued": by_status.get(JobStatus.QUEUED, 0),
        "today_total": jobs_created_since(midnight),
        "today_failed": jobs_finished_count(since=midnight, status=JobStatus.FAILED),
        "stalled": stalled_jobs_queryset().count(),
    }
