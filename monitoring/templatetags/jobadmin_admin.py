"""Template tags for the admin index: job counts at a glance (health is fetched live)."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Count
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.services import stalled_jobs_queryset

register = template.Library()


@register.simple_tag
def jobadmin_overview() -> dict[str, Any]:
    """Counts by status, today's totals and the stalled count, each from an indexed query."""
    by_status = dict(Job.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
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
