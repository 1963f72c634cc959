"""The job page and its history: what they show, rendered once, on the page and live.

The page (``job_page.html``) is made of sections, each one template under
``admin/jobs/job/job_page/``. The page's script paints what every ``job-update`` carries
(status, progress, items, ETA, the actions the state allows, from ``jobs.events.job_snapshot``)
the moment it arrives; after an update that is more than progress, and every few seconds while
the job runs (heartbeats write no event), it asks ``live_state`` for the rest — the sections
rendered by these same templates, and the timeline and log rows after the last one it has —
so no fact has a second renderer in the script.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html

from jobs import policy, selectors
from jobs.admin.times import iso_time
from jobs.models import TRANSITIONS, EventKind, Job, JobEvent, JobStatus

# The timeline is what happened to the job; its log lines have a card of their own.
TIMELINE_HIDDEN = (EventKind.PROGRESS, EventKind.LOG)
# The history is every event but progress (the figures are on the page): who did what, and when.
HISTORY_HIDDEN = (EventKind.PROGRESS,)
TIMELINE_SHOWN = 300
LOG_SHOWN = 500
HISTORY_PER_PAGE = 100
# While a job runs, its page asks for its heartbeat this often (seconds): lateness writes no event.
HEARTBEAT_CHECK_EVERY = 5

# The sections the script replaces from ``live_state``: name -> template.
SECTIONS = {name: f"admin/jobs/job/job_page/{name}.html" for name in ("facts", "notices", "steps", "result", "error")}
TIMELINE_ROWS = "admin/jobs/job/job_page/timeline_rows.html"
LOG_ROWS = "admin/jobs/job/job_page/log_rows.html"


def status_badge(status: str) -> str:
    label = JobStatus(status).label if status in JobStatus.values else status
    return format_html('<span class="ja-badge ja-status-{}" data-job-status>{}</span>', status, label)


def progress_bar(job: Job) -> str:
    value = round(job.progress or 0)
    return format_html(
        '<span class="ja-progress" role="progressbar" aria-label="Progress" aria-valuemin="0" aria-valuemax="100" '
        'aria-valuenow="{}" data-job-progress><span class="ja-progress-fill" style="width:{}%"></span>'
        '<span class="ja-progress-text">{}%</span></span>',
        value,
        value,
        value,
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_duration_seconds(job: Job) -> float | None:
    """Stored when finished; for an active job, the time it has been running."""
    if job.duration is not None:
        return job.duration
    if job.started_at and not job.is_finished:
        return (timezone.now() - job.started_at).total_seconds()
    return None


def step_states(job: Job) -> list[dict[str, Any]]:
    """Each step with its state: done, current, paused (where a paused job stopped), failed or
    cancelled (where the job ended), or todo; ``said`` is the state in words for screen readers."""
    here = {
        JobStatus.RUNNING: ("current", "in progress"),
        JobStatus.PAUSED: ("paused", "paused here"),
        JobStatus.FAILED: ("failed", "failed here"),
        JobStatus.CANCELLED: ("cancelled", "cancelled here"),
        JobStatus.QUEUED: ("current", "continues here"),
    }
    # A queued job is somewhere in its steps only when it continues from a checkpoint (a retry
    # starts over); a job that ended before it started stopped at no step.
    reached = job.checkpoint is not None if job.status == JobStatus.QUEUED else job.started_at is not None
    states = []
    for index, name in enumerate(job.steps or []):
        if job.status == JobStatus.COMPLETED or index < job.current_step:
            state, said = "done", "done"
        elif index == job.current_step and reached:
            state, said = here[JobStatus(job.status)]
        else:
            state, said = "todo", "to do"
        states.append({"index": index, "name": name, "state": state, "said": said})
    return states


def heartbeat(job: Job, now: datetime) -> dict[str, Any]:
    """A running job's heartbeat: its age, and whether it is late or already past the stall threshold."""
    age = selectors.job_heartbeat_age(job=job, now=now)
    late_after = selectors.heartbeat_late_after()
    stall = float(settings.JOBADMIN_STALL_THRESHOLD)
    return {
        "age": age,
        "age_text": format_duration(age),
        "late_after": format_duration(late_after),
        "stall_after": format_duration(stall),
        "late": age is not None and age > late_after,
        "stalled": age is not None and age > stall,
    }


def event_detail(event: JobEvent) -> str:
    payload = event.payload or {}
    if event.kind == EventKind.LOG:
        return "\n".join(str(line.get("message", line)) for line in payload.get("lines", []))
    if event.kind == EventKind.STEP:
        return str(payload.get("job", {}).get("step_name", ""))
    for key in ("error", "previous_error"):
        if payload.get(key):
            return str(payload[key])
    if payload.get("retry_at"):
        return f"retry at {payload['retry_at']}"
    return ""


def timeline_row(event: JobEvent) -> dict[str, Any]:
    snapshot = (event.payload or {}).get("job") or {}
    status = snapshot.get("status", "")
    return {
        "id": event.id,
        "kind": event.kind,
        "actor": event.actor_label,  # the person who acted, or "system" (workers, schedules, sweeps)
        "created_at": event.created_at,
        "when": iso_time(event.created_at),
        "status": status_badge(status) if status else "",
        "worker": snapshot.get("worker", ""),
        "detail": event_detail(event),
    }


def log_rows(events: list[JobEvent]) -> list[dict[str, Any]]:
    """The lines of the job's ``log`` events, each with its time and level."""
    rows = []
    for event in events:
        for line in (event.payload or {}).get("lines", []):
            at = line.get("at") if isinstance(line, dict) else None
            when = datetime.fromisoformat(at) if isinstance(at, str) else event.created_at
            rows.append(
                {
                    "event_id": event.id,
                    "when": iso_time(when, kind="clock"),
                    "level": line.get("level", "info") if isinstance(line, dict) else "info",
                    "message": line.get("message", "") if isinstance(line, dict) else str(line),
                }
            )
    return rows


def sections_context(job: Job, request: HttpRequest) -> dict[str, Any]:
    """What the live sections show: the facts, the notices (late, pending requests, where it
    stopped), the steps, the result and the error."""
    now = timezone.now()
    result = selectors.job_result(job=job)
    return {
        "job": job,
        "job_status_badge": status_badge(job.status),
        "job_progress_bar": progress_bar(job),
        "job_duration": format_duration(job_duration_seconds(job)),
        "job_queue_wait": format_duration(job.queue_wait),
        "job_steps": step_states(job),
        "job_heartbeat": heartbeat(job, now),
        "job_result": result,
        "job_result_json": None if result is None else json.dumps(result.data, indent=2, sort_keys=True, default=str),
        "job_internals": policy.may_see_job_internals(request.user),
        "job_may_sweep": policy.may_sweep_jobs(request.user),
        "job_times": {
            "created": iso_time(job.created_at),
            "started": iso_time(job.started_at),
            "finished": iso_time(job.finished_at),
            "updated": iso_time(job.updated_at),
            "heartbeat": iso_time(job.heartbeat_at),
        },
    }


def page_context(job: Job, request: HttpRequest, *, since: int) -> dict[str, Any]:
    """Everything the job page shows when it is rendered; ``since``: an event id read before
    ``job`` was, where the page's stream resumes."""
    timeline, timeline_truncated = selectors.job_timeline(job=job, hidden_kinds=TIMELINE_HIDDEN, limit=TIMELINE_SHOWN)
    logs, log_truncated = selectors.job_timeline(job=job, kinds=[EventKind.LOG], limit=LOG_SHOWN)
    sections = sections_context(job, request)
    allowed = job.allowed_actions()
    may_act = policy.may_act_on_job(user=request.user, job=job)
    return {
        **sections,
        "job_timeline": [timeline_row(e) for e in timeline],
        "job_timeline_truncated": timeline_truncated,
        "job_log": log_rows(logs),
        "job_log_truncated": log_truncated,
        # Every action has its form for one who may act; the script shows those the job's live
        # state allows (each job-update's ``actions``). One who may not act gets none.
        "job_action_buttons": [(a, a.capitalize(), a in allowed) for a in TRANSITIONS] if may_act else [],
        "job_actions": [(a, a.capitalize()) for a in allowed] if may_act else [],
        "job_status_labels": dict(JobStatus.choices),
        "job_params": sorted((job.params or {}).items()),
        # As the script paints it: a late job's ETA is not believed.
        "job_eta": "— (late)" if sections["job_heartbeat"]["late"] else iso_time(job.eta, kind="clock"),
        "job_since": since,
    }


def live_state(job: Job, request: HttpRequest, *, after: int, read_at: int) -> dict[str, Any]:
    """The body of the page's ``live/`` request: its sections as the page renders them, the
    actions the job's state allows, the timeline and log rows after event ``after``, and when to
    ask again while the job runs. ``read_at``: an event id read before ``job`` was (the script
    keeps a newer job-update's status and actions over these)."""
    context = sections_context(job, request)
    sections = {name: render_to_string(template, context, request) for name, template in SECTIONS.items()}
    timeline, _ = selectors.job_timeline(job=job, hidden_kinds=TIMELINE_HIDDEN, after=after, limit=TIMELINE_SHOWN)
    logs, _ = selectors.job_timeline(job=job, kinds=[EventKind.LOG], after=after, limit=LOG_SHOWN)
    newest = max([after, *(e.id for e in timeline), *(e.id for e in logs)])
    return {
        "event_id": read_at,
        "status": job.status,
        "actions": job.allowed_actions(),
        "late": context["job_heartbeat"]["late"],
        "sections": sections,
        "timeline": render_to_string(TIMELINE_ROWS, {"job_timeline": [timeline_row(e) for e in timeline]}),
        "log": render_to_string(LOG_ROWS, {"job_log": log_rows(logs)}),
        "after": newest,
        "check_again": HEARTBEAT_CHECK_EVERY if job.status == JobStatus.RUNNING else None,
    }


def history_page(job: Job, number: str | None) -> tuple[Page[JobEvent], list[dict[str, Any]]]:
    """One page of the job's history (every event but progress, oldest first) and its rows."""
    events = selectors.job_history(job=job, hidden_kinds=HISTORY_HIDDEN)
    page = Paginator(events, HISTORY_PER_PAGE).get_page(number)
    return page, [timeline_row(e) for e in page.object_list]
