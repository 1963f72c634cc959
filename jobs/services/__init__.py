"""Everything that writes a job: the one package that owns every status transition.

Each public function checks the current state, applies the change and records its
event in one transaction, or raises ``TransitionNotAllowed`` having changed nothing.
Wake-ups for the workers are sent with ``transaction.on_commit`` so that a worker never
looks for a row that was rolled back. The table of the actions people may take is data:
``jobs.models.TRANSITIONS``.

By sub-domain: ``queues`` (slots, wake-ups, pausing a queue, the dispatch tick),
``claim`` (enqueue, bulk enqueue and claim), ``schedules`` (schedules and their firing),
``reports`` (what the running job's worker writes, and how
an attempt ends), ``actions`` (cancel, pause, resume, retry by people) and ``stalls``
(the stall sweep). SQL lives in ``jobs.rows``. The names below are the package's public
interface: ``from jobs import services; services.job_cancel(...)``.

Transitions (``→`` by a person or the API, ``⇒`` by the worker or the system)::

    queued   → cancelled            queued   ⇒ running   (claim; continues from a checkpoint)
    running  → (pause requested)    running  ⇒ paused    (suspended at a checkpoint)
    running  → (cancel requested)   running  ⇒ queued    (suspended: its worker stops)
    paused   → queued (resume)      running  ⇒ cancelled (at a checkpoint)
    paused   → cancelled            running  ⇒ completed | failed | queued (retry)
    failed/cancelled → queued       running  ⇒ failed | queued (stalled, timed out, abandoned)
"""

from jobs.events import record_job_event
from jobs.selectors import stalled_jobs_queryset
from jobs.services._shared import RUN_TASK, type_or_none, worker_name
from jobs.services.actions import JOB_ACTIONS, job_cancel, job_pause, job_resume, job_retry
from jobs.services.batches import (
    BatchStatus,
    BatchSummary,
    batch_cancel,
    batch_create,
    batch_create_once,
    batch_retry,
    batch_summaries,
    batch_summary,
)
from jobs.services.claim import Enqueued, job_claim, job_enqueue, job_enqueue_once, jobs_enqueue_many, user_share
from jobs.services.queues import (
    broker_in_the_jobs_database,
    dispatch_tick,
    queue_active_count,
    queue_add_missing_slots,
    queue_ensure_defaults,
    queue_pause,
    queue_resume,
    release_orphaned_slots,
    send_wakeups,
    wakeup_if_waiting,
    wakeup_received,
)
from jobs.services.reports import (
    Control,
    job_complete,
    job_complete_and_claim,
    job_fail,
    job_heartbeat,
    job_log,
    job_mark_cancelled,
    job_report,
    job_suspend,
)
from jobs.services.schedules import (
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_problems,
    schedule_resume,
    schedule_run_now,
    schedule_update,
    schedules_fire,
    upcoming_runs,
)
from jobs.services.stalls import StalledOutcome, job_abandon, jobs_cleanup_stalled, jobs_recover_dead_workers

__all__ = [
    "BatchStatus",
    "BatchSummary",
    "batch_cancel",
    "batch_create",
    "batch_create_once",
    "batch_retry",
    "batch_summaries",
    "batch_summary",
    "Control",
    "Enqueued",
    "JOB_ACTIONS",
    "RUN_TASK",
    "StalledOutcome",
    "broker_in_the_jobs_database",
    "dispatch_tick",
    "job_abandon",
    "job_cancel",
    "job_claim",
    "job_complete",
    "job_complete_and_claim",
    "job_enqueue",
    "job_enqueue_once",
    "job_fail",
    "job_heartbeat",
    "job_log",
    "job_mark_cancelled",
    "job_pause",
    "job_report",
    "job_resume",
    "job_retry",
    "job_suspend",
    "jobs_cleanup_stalled",
    "jobs_enqueue_many",
    "jobs_recover_dead_workers",
    "queue_active_count",
    "queue_add_missing_slots",
    "queue_ensure_defaults",
    "queue_pause",
    "queue_resume",
    "record_job_event",
    "release_orphaned_slots",
    "schedule_create",
    "schedule_delete",
    "schedule_pause",
    "schedule_problems",
    "schedule_resume",
    "schedule_run_now",
    "schedule_update",
    "schedules_fire",
    "send_wakeups",
    "stalled_jobs_queryset",
    "type_or_none",
    "upcoming_runs",
    "user_share",
    "wakeup_if_waiting",
    "wakeup_received",
    "worker_name",
]
