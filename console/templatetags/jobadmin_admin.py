"""Template tags for the admin index: job counts at a glance (health is fetched live)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.services import stalled_jobs_queryset

register = template.Library()


@register.simple_tag
def jobadmin_overview() -> dict[str, Any]:
    """Counts by status, today's totals and the stalled count, each from an indexed query."""
    # One indexed count per status (``job_status_created``), not a GROUP BY over the history.
    by_status = {status: Job.objects.filter(status=status).count() for status in JobStatus.values}
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Job.objects.filter(created_at__gte=midnight)
    return {
        "statuses": [(s.value, s.label, by_status.get(s.value, 0)) for s in JobStatus],
        "active": sum(by_status.get(s, 0) for s in ACTIVE_STATUSES),
        "queued": by_status.get(JobStatus.QUEUED, 0),
        "today_total": today.count(),
        "today_failed": Job.objects.filter(finished_at__gte=midnight, status=JobStatus.FAILED).count(),
        "stalled": stalled_jobs_queryset().count(),
    }
