"""Reads of jobs that need more than a one-line queryset."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobs.models import Job, JobEvent


def can_manage_others(user: Any) -> bool:
    return bool(user and user.is_authenticated and (user.is_staff or user.has_perm("jobs.manage_others_jobs")))


def job_visible_queryset(*, user: Any) -> QuerySet[Job]:
    """Staff and holders of ``jobs.manage_others_jobs`` see every job; others their own."""
    queryset = Job.objects.all()
    if not (user and user.is_authenticated):
        return queryset.none()
    if can_manage_others(user):
        return queryset
    return queryset.filter(user=user)


def can_act_on(*, user: Any, job: Job) -> bool:
    """Acting on another user's job needs the model permission (staff get it through the admin)."""
    if not (user and user.is_authenticated):
        return False
    if job.user_id == user.pk:
        return True
    return user.is_superuser or user.has_perm("jobs.manage_others_jobs")


def job_events(*, job: Job, after: int | None = None, limit: int = 500) -> QuerySet[JobEvent]:
    queryset = JobEvent.objects.filter(job=job).select_related("actor").order_by("id")
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    return queryset[:limit]
