"""Schedules: create, change, pause, resume, run now, delete, and the monitor's firing of due ones.

Every change is checked as a job enqueue is (the type, the owner's permission to run it, its
params, its queue) and recorded in the event log with its actor. The monitor's duty
``schedules_fire`` queues each due schedule once: it moves ``next_run_at`` past *now* with a
conditional ``UPDATE`` (only from the value it read), so two monitors, or a deposed leader that
comes back, never queue one due time twice, and runs missed while nothing ran are queued once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from jobs import policy, schedules
from jobs.events import record_event
from jobs.exceptions import QueueNotFound
from jobs.models import PRIORITY_MAX, PRIORITY_MIN, EventKind, Job, Schedule
from jobs.registry import UnknownJobType, get_job_type
from jobs.services._shared import actor_pk
from jobs.services.claim import job_enqueue

logger = logging.getLogger(__name__)

# What a schedule's owner may set (the API's and the admin form's fields).
FIELDS = ("name", "type", "params", "queue", "priority", "cron", "timezone", "interval_minutes", "enabled")


def schedule_create(
    *, values: Mapping[str, Any], user: Any, actor: Any = None, now: datetime | None = None
) -> Schedule:
    """A new schedule owned by ``user`` (None: the system), checked like an enqueue;
    DRF's ``ValidationError`` with field messages or ``policy.AccessDenied`` if refused."""
    schedule = Schedule(user=user if getattr(user, "is_authenticated", False) else None)
    return _save(schedule, values, actor=actor or user, created=True, now=now)


def schedule_update(
    *, schedule: Schedule, values: Mapping[str, Any], actor: Any, now: datetime | None = None
) -> Schedule:
    """Change some of ``FIELDS``; the next run is computed again from now."""
    return _save(schedule, values, actor=actor, created=False, now=now)


def schedule_pause(*, schedule: Schedule, actor: Any) -> Schedule:
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if schedule.enabled:
            schedule.enabled = False
            schedule.next_run_at = None
            _write(schedule, EventKind.SCHEDULE_PAUSED, actor)
    return schedule


def schedule_resume(*, schedule: Schedule, actor: Any, now: datetime | None = None) -> Schedule:
    """Enabled again; the next run is the next due time after now (a pause skips its runs)."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if not schedule.enabled:
            _require_may_run(schedule)
            schedule.enabled, schedule.last_error = True, ""
            schedule.next_run_at = _next(schedule, after=now)
            _write(schedule, EventKind.SCHEDULE_RESUMED, actor)
    return schedule


def schedule_run_now(*, schedule: Schedule, actor: Any) -> Job:
    """Queue one job of the schedule now, also while it is paused; its next run stays."""
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        job = _enqueue(schedule)
        schedule.last_run_at = job.created_at
        _write(schedule, EventKind.SCHEDULE_RUN, actor, extra={"job": str(job.pk), "by": "hand"})
    return job


def schedule_delete(*, schedule: Schedule, actor: Any) -> None:
    """Deleted; the jobs it queued stay (their ``schedule`` becomes null)."""
    with transaction.atomic():
        _record(schedule, EventKind.SCHEDULE_CHANGED, actor, extra={"deleted": True})
        schedule.delete()


def schedules_fire(now: datetime | None = None) -> list[Job]:
    """The monitor's duty: queue every enabled schedule whose ``next_run_at`` is due, once.

    A schedule whose owner may no longer run its type is refused: nothing is queued, it is
    paused with the reason in ``last_error``, and the refusal is in the event log.
    """
    now = now or timezone.now()
    queued = []
    for schedule in Schedule.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at"):
        due = schedule.next_run_at
        assert due is not None  # the filter's
        upcoming = _next(schedule, after=now)
        with transaction.atomic():
            # Only from the due time read: another monitor, or this one deposed and back,
            # that fired it already moved it on, and this update then changes nothing.
            taken = Schedule.objects.filter(pk=schedule.pk, enabled=True, next_run_at=due).update(
                next_run_at=upcoming, last_run_at=now, updated_at=now
            )
            if not taken:
                continue
            schedule.refresh_from_db()
            try:
                job = _enqueue(schedule)
            except (policy.AccessDenied, UnknownJobType, QueueNotFound, serializers.ValidationError) as exc:
                _refuse(schedule, exc, now)
                continue
            _record(schedule, EventKind.SCHEDULE_RUN, None, extra={"job": str(job.pk), "due": due.isoformat()})
        queued.append(job)
    return queued


def upcoming_runs(schedule: Schedule, *, count: int = 5, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` due times (the form shows five, so a wrong expression is seen); a
    paused schedule's as if resumed now."""
    if schedule.next_run_at is None:
        return schedules.next_runs(**_when(schedule), after=now or timezone.now(), count=count)
    later = schedules.next_runs(**_when(schedule), after=schedule.next_run_at, count=count - 1)
    return [schedule.next_run_at, *later]


# --- inside -----------------------------------------------------------------------------------


def _save(
    schedule: Schedule, values: Mapping[str, Any], *, actor: Any, created: bool, now: datetime | None
) -> Schedule:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
    for name, value in values.items():
        setattr(schedule, name, value)
    if created and not schedule.name:
        schedule.name = schedule.type
    if problems := schedule_problems(schedule):
        raise serializers.ValidationError(problems)
    _require_may_run(schedule)
    now = now or timezone.now()
    schedule.cron = (schedule.cron or "").strip()
    schedule.next_run_at = _next(schedule, after=now) if schedule.enabled else None
    schedule.last_error = "" if schedule.enabled else schedule.last_error
    schedule.updated_at = now
    with transaction.atomic():
        schedule.save()
        _record(schedule, EventKind.SCHEDULE_CHANGED, actor, extra={"created": created})
    return schedule


def schedule_problems(schedule: Schedule) -> dict[str, Any]:
    """Field messages for what is wrong with ``schedule`` as it stands (its timing, and what an
    enqueue of its job would refuse), or ``{}``; the admin form shows the same messages."""
    problems: dict[str, Any] = schedules.when_problems(
        cron=schedule.cron or "", timezone=schedule.timezone or "", interval_minutes=schedule.interval_minutes
    )
    problems.update(_job_problems(schedule))
    return problems


def _job_problems(schedule: Schedule) -> dict[str, Any]:
    """What an enqueue of the schedule's job would refuse, as field messages."""
    try:
        jtype = get_job_type(schedule.type)
    except UnknownJobType:
        return {"type": [f"Unknown job type {schedule.type!r}."]}
    problems: dict[str, Any] = {}
    try:
        schedule.params = jtype.validate_params(schedule.params)
    except serializers.ValidationError as exc:
        problems["params"] = exc.detail
    if schedule.priority is not None and not PRIORITY_MIN <= schedule.priority <= PRIORITY_MAX:
        problems["priority"] = [f"An integer from {PRIORITY_MIN} to {PRIORITY_MAX}."]
    from jobs.services.queues import queue_get  # a configured queue not created yet is created

    try:
        queue_get(schedule.queue or jtype.queue)
    except QueueNotFound as exc:
        problems["queue"] = [str(exc)]
    return problems


def _require_may_run(schedule: Schedule) -> None:
    """The owner (not whoever edits it) must be allowed to queue its type at its priority."""
    if schedule.user is None:
        return
    jtype = get_job_type(schedule.type)
    policy.require_may_run_job_type(user=schedule.user, job_type=jtype)
    policy.require_may_set_priority(user=schedule.user, job_type=jtype, priority=schedule.priority)


def _enqueue(schedule: Schedule) -> Job:
    job = job_enqueue(
        job_type=schedule.type,
        params=schedule.params,
        user=schedule.user,
        queue=schedule.queue or None,
        priority=schedule.priority,
        schedule=schedule,
    )
    return job


def _refuse(schedule: Schedule, exc: Exception, now: datetime) -> None:
    reason = f"Paused: the run due at {now:%Y-%m-%d %H:%M} UTC was refused: {exc}"
    logger.warning("schedule %s (%s): %s", schedule.pk, schedule.name, reason)
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False, next_run_at=None, last_error=reason)
    _record(schedule, EventKind.SCHEDULE_REFUSED, None, extra={"reason": str(exc)})


def _next(schedule: Schedule, *, after: datetime) -> datetime:
    return schedules.next_runs(**_when(schedule), after=after, count=1)[0]


def _when(schedule: Schedule) -> dict[str, Any]:
    return {"cron": schedule.cron or "", "timezone": schedule.timezone, "interval_minutes": schedule.interval_minutes}


def _write(schedule: Schedule, kind: str, actor: Any, extra: dict[str, Any] | None = None) -> None:
    schedule.updated_at = timezone.now()
    schedule.save()
    _record(schedule, kind, actor, extra=extra)


def _record(schedule: Schedule, kind: str, actor: Any, extra: dict[str, Any] | None = None) -> None:
    payload: dict[str, Any] = {"schedule": {"id": schedule.pk, "name": schedule.name, "type": schedule.type}}
    payload.update(extra or {})
    record_event(kind=kind, payload=payload, actor_id=actor_pk(actor))
