"""What a running job function gets as ``ctx``: reporting, checkpoints, continuations and heartbeats.

Reports are coalesced: ``progress`` only updates memory and writes at most once per
``JOBADMIN_PROGRESS_INTERVAL``; a step change, a suspension and the final state always
write. Every report is a checkpoint: a cancel raises ``JobCancelled`` inside the job, a
pause raises ``JobSuspended``: the job unwinds, its checkpoint (step and cursor) is
written, and its worker and queue slot are free. A later run continues it: the steps it
finished are skipped (``step`` returns False for them) and ``iterate`` starts at the
cursor. docs/jobs.md teaches it.

A daemon thread refreshes the heartbeat and reads the control flags back, so a
checkpoint costs one attribute read and never a query.

Through a database outage the job goes on: its reports are kept, in order, and written
when the database answers again; the heartbeat thread keeps trying. Only when the outage
outlasts ``jobs.outage.give_up_after()`` does the worker give the job up (``JobLost`` at
the next checkpoint), and the stall sweep settles it once the database is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs import outage, services
from jobs.exceptions import CursorNotSaved, JobCancelled, JobLost, JobSuspended, JobTimedOut
from jobs.models import EventKind, Job, JobStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
_JSON_SCALARS = frozenset({int, str, bool, type(None)})


class JobContext:
    def __init__(self, job: Job, *, worker: str) -> None:
        self.job_id = job.pk
        self.job_type = job.type
        self.user_id = job.user_id  # the job runs with the rights of the user who queued it
        self.params = job.params
        self.attempt = job.attempts
        self.worker = worker
        self.steps: list[str] = [str(s) for s in job.steps]
        self.result_file: tuple[str, bytes] | None = None
        # The claim's facts a job function may want without reading the row again.
        self.enqueued_at = job.created_at
        self.started_at = job.started_at
        self.continued = job.checkpoint is not None

        self._current_step = 0
        self._processed = 0
        self._total: int | None = None
        self._errors = 0
        # Continuation: the step of this run's walk (``step`` calls), the cursor of the
        # current step, and, on a continued job, the step it stopped in.
        self._position = 0
        self._cursor: Any = None
        self._resume_step: int | None = None
        checkpoint = job.checkpoint
        if checkpoint is not None:
            self._current_step = self._resume_step = int(checkpoint.get("step", 0))
            self._cursor = checkpoint.get("cursor")
            self._processed = job.processed_items
            self._total = job.total_items
            self._errors = job.error_count
        # The worker process is stopping (jobs.shutdown): suspend at the next checkpoint and
        # queue the job again for another worker.
        self.stopping = False
        # Set while a cancel or a suspension unwinds the job: its ``finally`` blocks may
        # still log and report without meeting the same checkpoint again.
        self._unwinding = False
        self._dirty = False
        self._log_lines: list[dict[str, Any]] = []
        # Reports not written yet, in order: (kind, extra, values). Empty unless the
        # database is out; consecutive progress reports are coalesced into the last one.
        self._pending: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
        # The last write that went through (a report or a heartbeat; the claim before
        # them), and since when writes fail (None while they go through).
        self._last_written = time.monotonic()
        self._failing_since: float | None = None
        self._retry_at = 0.0

        self._interval = settings.JOBADMIN_PROGRESS_INTERVAL
        self._next_flush = time.monotonic() + self._interval
        self._step_started = time.monotonic()
        self._step_processed_at_start = 0
        self._deadline = time.monotonic() + job.timeout
        self.timeout = job.timeout

        # Set by the heartbeat thread; read at every checkpoint.
        self._signal: str | None = None
        self._lost_reason = "This worker no longer owns the job."

    # --- API for job functions ------------------------------------------------------------

    def step(self, name: str | int | None = None) -> bool:
        """Move to the next step, or to the step named (or numbered) ``name``; always written.

        Returns False for a step that an earlier run of this job finished (nothing is
        written and the step's work must not run again: ``if ctx.step("Import"): ...``),
        True otherwise. On the step a continued job stopped in it returns True and keeps
        that step's cursor and figures.
        """
        self.checkpoint()
        if name is None:
            index = self._position + 1
        elif isinstance(name, int):
            index = name
        else:
            if name not in self.steps:
                self.steps.append(name)
            index = self.steps.index(name)
        if index >= len(self.steps):
            self.steps.extend(f"Step {i + 1}" for i in range(len(self.steps), index + 1))
        self._position = index
        if self._resume_step is not None:
            if index < self._resume_step:
                return False  # finished by an earlier run
            continuing = index == self._resume_step
            self._resume_step = None
            if continuing:
                self._step_started = time.monotonic()
                self._step_processed_at_start = self._processed
                self._flush(
                    kind=EventKind.STEP, extra={"step": index, "step_name": self.steps[index], "continued": True}
                )
                return True
        if self._dirty:
            self._flush(kind=EventKind.PROGRESS)
        # Counts carry over until the new step reports its own, so the last figures stay visible.
        self._current_step = index
        self._cursor = None
        self._step_started = time.monotonic()
        self._step_processed_at_start = self._processed
        self._flush(kind=EventKind.STEP, extra={"step": index, "step_name": self.steps[index]})
        return True

    def iterate(self, items: Iterable[T], *, total: int | None = None) -> Iterator[T]:
        """Walk ``items`` with progress, checkpoints and a cursor: the common loop of a job.

        Before each item it reports ``processed`` (coalesced, like ``progress``) and is a
        checkpoint; the cursor is the index of the next item to do, so a job suspended
        here continues at the first item it had not finished. ``items`` must come in the
        same order on every run (a list, a range, an ordered query). ``total`` defaults
        to ``len(items)`` where there is one. In a step that an earlier run finished it
        yields nothing.
        """
        if self._position < self._current_step:
            return
        start = self._cursor if isinstance(self._cursor, int) and self._cursor > 0 else 0
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        if total is not None:
            self._total = total
        done = start
        for item in islice(items, start, None):
            self._cursor = done
            self.progress(processed=done)
            yield item
            done += 1
        self._cursor = done
        self.progress(processed=done)

    @property
    def cursor(self) -> Any:
        """The current step's cursor: what ``save_cursor`` (or ``iterate``) saved, on a
        continued job the value it stopped at; None at a step's start."""
        return self._cursor

    def save_cursor(
        self, value: Any, *, processed: int | None = None, total: int | None = None, errors: int | None = None
    ) -> None:
        """Keep ``value`` (anything JSON can store) as the current step's cursor, with the
        step's figures (as ``progress`` takes them).

        Save it after the work it stands for is done: a job suspended here continues from
        it. Written with the next report (coalesced like ``progress``) and always when the
        job is suspended; also a checkpoint. A value JSON cannot store raises
        ``CursorNotSaved`` and the previous cursor stays.
        """
        if type(value) not in _JSON_SCALARS:  # a scalar is JSON as it is: no encoding per call
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise CursorNotSaved(
                    f"A cursor must be JSON (str, int, float, bool, None, list, dict): {exc}"
                ) from None
        self._cursor = value
        self.progress(processed=processed, total=total, errors=errors)

    def progress(self, processed: int | None = None, total: int | None = None, errors: int | None = None) -> None:
        """Report counts for the current step; cheap enough for a tight loop."""
        # The figures first: they report work already done, also when the checkpoint below
        # stops the job (its suspension or cancellation writes them).
        if processed is not None:
            self._processed = processed
        if total is not None:
            self._total = total
        if errors is not None:
            self._errors = errors
        if self._signal is not None:
            self.checkpoint()
        self._dirty = True
        now = time.monotonic()
        if now >= self._next_flush:
            if now > self._deadline:
                raise JobTimedOut(f"Timed out after {self.timeout} s.")
            self._flush(kind=EventKind.PROGRESS, monotonic_now=now)

    def log(self, message: str, level: str = "info") -> None:
        """A log line for the job's timeline; buffered and written with the next report."""
        self._log_lines.append({"at": timezone.now().isoformat(), "level": level, "message": str(message)[:2000]})
        getattr(logger, level if level in ("debug", "info", "warning", "error") else "info")(
            "job %s: %s", self.job_id, message
        )
        if len(self._log_lines) >= 100 and self._failing_since is None:
            self._write_or_keep(self._flush_logs, time.monotonic())
        if self._signal is not None:
            self.checkpoint()

    def flush_log(self) -> None:
        """Write the buffered log lines now (a job that streams output, ``jobs.bridge``), not
        with the next report; while the database is out they stay buffered."""
        if self._log_lines and self._failing_since is None:
            self._write_or_keep(self._flush_logs, time.monotonic())

    def save_file(self, name: str, content: bytes) -> None:
        """Keep ``content`` as the job's result file (written when the job completes)."""
        self.result_file = (name, content)

    def checkpoint(self) -> None:
        """Let a pending cancel or pause take effect here."""
        if self._unwinding:
            return
        if time.monotonic() > self._deadline:
            raise JobTimedOut(f"Timed out after {self.timeout} s.")
        pending = self._signal
        if pending is None:
            return
        if pending == "lost":
            raise JobLost(self._lost_reason)
        self._unwinding = True
        if pending == "cancel":
            raise JobCancelled("Cancelled.")
        if pending == "pause":
            raise JobSuspended("Paused.")
        if pending == "stop":
            raise JobSuspended("The worker is stopping.")
        self._unwinding = False

    def stop_requested(self) -> None:
        """The worker process is stopping: the next checkpoint suspends the job (jobs.shutdown)."""
        self.stopping = True
        if self._signal is None:
            self._signal = "stop"

    # --- The runner's side -------------------------------------------------------------------

    def values(self, now: datetime | None = None) -> dict[str, Any]:
        """The job fields this context owns, as they stand now."""
        total = self._total
        processed = self._processed
        if total:
            progress = min(100.0, 100.0 * processed / total)
        elif self.steps:
            progress = 100.0 * self._current_step / len(self.steps)
        else:
            progress = 0.0
        return {
            "current_step": self._current_step,
            "steps": self.steps,
            "processed_items": processed,
            "total_items": total,
            "error_count": self._errors,
            "progress": progress,
            "eta": self._eta(now or timezone.now()),
            "checkpoint": {"step": self._current_step, "cursor": self._cursor},
        }

    def _eta(self, now: datetime) -> datetime | None:
        if not self._total or self._processed >= self._total:
            return None
        done = self._processed - self._step_processed_at_start
        elapsed = time.monotonic() - self._step_started
        if done <= 0 or elapsed <= 0:
            return None
        return now + timedelta(seconds=(self._total - self._processed) * elapsed / done)

    def _flush(self, *, kind: str, extra: dict[str, Any] | None = None, monotonic_now: float | None = None) -> None:
        now = monotonic_now or time.monotonic()
        self._dirty = False
        self._next_flush = now + self._interval
        report = (kind, extra, self.values())
        if self._pending and kind == EventKind.PROGRESS and extra is None and self._pending[-1][0] == kind:
            self._pending[-1] = report  # progress is a state: only the newest is worth writing
        else:
            self._pending.append(report)
        if self._failing_since is not None and now < self._retry_at:
            return  # the database is out: kept, and tried again after RETRY_EVERY
        self._write_or_keep(self._write_pending, now)

    def _write_or_keep(self, write: Callable[[], None], now: float) -> None:
        """Write now; if the database is out, keep what is pending for a later try."""
        try:
            write()
        except DatabaseError as exc:
            if not outage.is_outage(exc):
                raise
            self._write_failed(now)

    def _write_pending(self) -> None:
        """Write the kept log lines and reports, oldest first; raises if the database is out.
        With nothing kept nothing is written, and nothing counts as a write that went through."""
        if not self._log_lines and not self._pending:
            return
        if self._log_lines:
            self._flush_logs()
        while self._pending:
            kind, extra, values = self._pending[0]
            if not services.job_report(
                job_id=self.job_id, worker=self.worker, attempt=self.attempt, values=values, kind=kind, extra=extra
            ):
                self._pending.clear()
                self._signal = "lost"
                raise JobLost("This worker no longer owns the job.")
            del self._pending[0]
        self.written()

    def written(self) -> None:
        """A write of this job's went through (the heartbeat thread calls it too)."""
        self._last_written = time.monotonic()
        if self._failing_since is not None:
            logger.warning(
                "job %s: the database answers again after %.1f s", self.job_id, self._last_written - self._failing_since
            )
            self._failing_since = None

    def _write_failed(self, now: float) -> None:
        """A write failed for want of the database: keep what is pending, retry later, and give
        the job up once the outage outlasts ``outage.give_up_after()``."""
        outage.drop_connection()
        if self._failing_since is None:
            self.write_failed_elsewhere(now)
            logger.warning(
                "job %s: the database is out; its reports are kept and the job goes on for up to %g s",
                self.job_id,
                outage.give_up_after(),
            )
        self._retry_at = now + outage.RETRY_EVERY
        self._dirty = True
        self.give_up_if_too_long(now)

    def give_up_if_too_long(self, now: float) -> None:
        if self.outage_deadline_passed(now):
            self.give_up(now)
            self._unwinding = True
            raise JobLost(self._lost_reason)

    def give_up(self, now: float) -> None:
        """The outage outlasted the grace: the job stops at its next checkpoint (``JobLost``)."""
        self._lost_reason = (
            f"the database was out for {now - self._last_written:.0f} s, so this worker gives the job up "
            "and the stall sweep settles it"
        )
        self._signal = "lost"

    def write_failed_elsewhere(self, now: float) -> None:
        """A write for this job (its heartbeat, its outcome) failed for want of the database."""
        if self._failing_since is None:
            self._failing_since = now

    def outage_deadline_passed(self, now: float) -> bool:
        return self._failing_since is not None and now - self._last_written >= outage.give_up_after()

    def write_through_outage(self, write: Callable[[], R]) -> R:
        """Run ``write`` (the attempt's outcome) once the kept reports are written, retrying
        both while the database is out; ``JobLost`` once the outage outlasts the grace."""
        while True:
            try:
                self._write_pending()
                return write()
            except DatabaseError as exc:
                if not outage.is_outage(exc):
                    raise
                self._write_failed(time.monotonic())
                time.sleep(outage.RETRY_EVERY)

    def _flush_logs(self) -> None:
        lines, self._log_lines = self._log_lines, []
        try:
            services.job_log(job_id=self.job_id, worker=self.worker, attempt=self.attempt, lines=lines)
        except DatabaseError:
            self._log_lines[:0] = lines  # kept for the next try
            raise

    # --- Heartbeat ---------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        _heartbeats.add(self)

    def stop_heartbeat(self) -> None:
        _heartbeats.remove(self)

    def _apply(self, control: services.Control) -> None:
        if self._signal == "lost":
            return  # for good: the job was taken, or given up
        if not control.owned and control.status != JobStatus.CANCELLED:
            pending: str | None = "lost"
        elif control.status == JobStatus.CANCELLED or control.cancel_requested:
            pending = "cancel"
        elif control.pause_requested:
            pending = "pause"
        elif self.stopping:
            pending = "stop"
        else:
            pending = None
        self._signal = pending


class _Beat:
    """A watched job's schedule: polled every ``poll`` seconds from its start, written every ``every`` polls."""

    __slots__ = ("due", "every", "poll", "tick")

    def __init__(self) -> None:
        self.poll = min(settings.JOBADMIN_HEARTBEAT_INTERVAL, settings.JOBADMIN_CONTROL_POLL)
        self.every = max(1, round(settings.JOBADMIN_HEARTBEAT_INTERVAL / self.poll))
        self.tick = 0
        self.due = time.monotonic() + self.poll


class _Heartbeats:
    """One daemon thread per process refreshes the heartbeat of every job the process runs.

    A worker runs one job at a time and most jobs are short: starting and joining a
    thread for each job cost more than a no-op job itself. Each job is first polled one
    interval after it starts, as with a thread of its own. The thread opens a database
    connection only when it beats, and closes it whenever no job is left to watch.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._contexts: dict[JobContext, _Beat] = {}
        self._thread: threading.Thread | None = None
        # When the thread's current wait ends (monotonic), or None while it waits for a job.
        self._sleeping_until: float | None = None

    def add(self, ctx: JobContext) -> None:
        with self._lock:
            beat = self._contexts[ctx] = _Beat()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jobadmin-heartbeat", daemon=True)
                self._thread.start()
            # Wake the thread only if it would sleep past this job's first poll: waking it
            # for every short job cost a thread switch each (and the GIL hand-over).
            if self._sleeping_until is None or self._sleeping_until > beat.due:
                self._wake.notify()

    def remove(self, ctx: JobContext) -> None:
        with self._lock:
            self._contexts.pop(ctx, None)

    def _due(self) -> list[tuple[JobContext, bool]]:
        """Wait until some job is due; return each due job and whether to write its heartbeat."""
        with self._lock:
            while True:
                if not self._contexts:
                    connection.close()
                    self._sleeping_until = None
                    while not self._contexts:
                        self._wake.wait()
                now = time.monotonic()
                wait = min(beat.due for beat in self._contexts.values()) - now
                if wait <= 0:
                    break
                self._sleeping_until = now + wait
                self._wake.wait(wait)
            due = []
            for ctx, beat in self._contexts.items():
                if beat.due <= now:
                    beat.tick += 1
                    beat.due = now + beat.poll
                    due.append((ctx, beat.tick % beat.every == 0))
            return due

    def _run(self) -> None:
        failing = False
        while True:
            for ctx, write in self._due():
                try:
                    control = services.job_heartbeat(
                        job_id=ctx.job_id, worker=ctx.worker, attempt=ctx.attempt, write=write
                    )
                except Exception as exc:  # a database hiccup must not kill the heartbeat
                    if not outage.is_outage(exc):
                        logger.exception("heartbeat of job %s failed", ctx.job_id)
                    elif not failing:
                        logger.warning("heartbeats fail: the database is out (%s)", exc)
                    failing = True
                    outage.drop_connection()
                    now = time.monotonic()
                    ctx.write_failed_elsewhere(now)
                    if ctx.outage_deadline_passed(now):
                        ctx.give_up(now)
                    continue
                if failing:
                    logger.warning("heartbeats go through again")
                    failing = False
                if write:
                    ctx.written()
                ctx._apply(control)


_heartbeats = _Heartbeats()
# A forked child inherits neither the thread nor a lock it may have held.
os.register_at_fork(after_in_child=_heartbeats._reset)
