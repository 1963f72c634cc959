"""Who may act on what. Seeing a job is decided by ``selectors.job_visible_queryset``
(a job the caller may not see is a 404); these classes decide acting on what one sees."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from jobs import selectors


class CanActOnJob(BasePermission):
    """Own jobs, or anyone's with ``jobs.manage_others_jobs`` (granted in the admin)."""

    message = "Acting on another user's job needs the 'jobs.manage_others_jobs' permission."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return selectors.can_act_on(user=request.user, job=obj)


class CanManageOthersJobs(BasePermission):
    """For actions that sweep every user's jobs (clean up stalled)."""

    message = "This action needs the 'jobs.manage_others_jobs' permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("jobs.manage_others_jobs"))


class CanPauseQueue(BasePermission):
    message = "Pausing and resuming queues needs the 'jobs.pause_queue' permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("jobs.pause_queue"))
