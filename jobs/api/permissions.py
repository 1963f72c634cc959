"""DRF permission classes, each one rule of ``jobs.policy`` (the classes hold none of their own).

Seeing a job is decided by ``policy.visible_jobs`` (a job the caller may not see is a 404);
these classes decide the rest. Each refusal's message names the missing permission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from jobs import policy


def policy_permission(rule: Callable[[Any], bool], message: str, name: str) -> type[BasePermission]:
    """A permission class that asks ``rule(user)``; anonymous callers get 401 from the authenticators first."""

    def has_permission(self: BasePermission, request: Request, view: Any) -> bool:
        return rule(request.user)

    return type(name, (BasePermission,), {"has_permission": has_permission, "message": message, "__doc__": message})


SignedIn = policy_permission(policy.may_use_api, "Authentication credentials were not provided.", "SignedIn")
CanSweepJobs = policy_permission(
    policy.may_sweep_jobs, policy.missing(policy.CHANGE_JOBS, "Acting on every user's jobs"), "CanSweepJobs"
)
CanSeeQueues = policy_permission(
    policy.may_see_queues, policy.missing(policy.VIEW_JOBS, "Seeing the queues"), "CanSeeQueues"
)
CanPauseQueue = policy_permission(
    policy.may_pause_queues, policy.missing(policy.PAUSE_QUEUE, "Pausing and resuming queues"), "CanPauseQueue"
)
CanSeeStatistics = policy_permission(
    policy.may_see_statistics, policy.missing(policy.VIEW_JOBS, "Seeing statistics"), "CanSeeStatistics"
)
CanSeeAlerts = policy_permission(
    policy.may_see_alerts, policy.missing(policy.VIEW_ALERT, "Seeing alerts"), "CanSeeAlerts"
)
CanChangeAlerts = policy_permission(
    policy.may_change_alerts,
    policy.missing(policy.CHANGE_ALERT, "Acknowledging or resolving alerts"),
    "CanChangeAlerts",
)
CanSeeAlertRules = policy_permission(
    policy.may_see_alert_rules, policy.missing(policy.VIEW_ALERTRULE, "Seeing alert rules"), "CanSeeAlertRules"
)
CanChangeAlertRules = policy_permission(
    policy.may_change_alert_rules,
    policy.missing(policy.CHANGE_ALERTRULE, "Changing alert rules"),
    "CanChangeAlertRules",
)
CanChangeSchedules = policy_permission(
    policy.may_change_schedules, policy.missing(policy.CHANGE_SCHEDULE, "Changing schedules"), "CanChangeSchedules"
)
CanSeeSchedules = policy_permission(
    policy.may_see_schedules, policy.missing(policy.VIEW_JOBS, "Seeing schedules"), "CanSeeSchedules"
)
