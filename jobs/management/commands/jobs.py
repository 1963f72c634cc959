"""``manage.py jobs``: watch, list, enqueue, cancel and retry jobs from a terminal (docs/cli.md).

The same services and the same access policy as the API: ``--as USERNAME`` acts as that user
(what they may see and do, and the actor recorded in the event log); without it the command
acts as the system, as a shell on the server already may. ``watch`` reads the event log itself,
so it needs neither the web server nor the live layer.

Exit codes: 0 done (every watched job completed); 1 a watched job failed or was cancelled;
2 usage or validation error (field errors printed, nothing queued); 3 not found or
forbidden; 4 the action is not allowed in the job's state (the API's 409).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import deque
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, CommandError
from django.db.models import QuerySet
from rest_framework import serializers
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from jobs import policy, selectors, services
from jobs.events import job_snapshot
from jobs.exceptions import JobError, QueueNotFound, TransitionNotAllowed
from jobs.filters import JobFilter
from jobs.models import Job, JobEvent, JobStatus
from jobs.registry import UnknownJobType

OK, JOB_NOT_COMPLETED, INVALID, NOT_FOUND, CONFLICT = 0, 1, 2, 3, 4
FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)
# On PostgreSQL event ids commit out of order: ``watch`` reads again every id above the highest
# one it had seen this many seconds ago, so an event that commits late is still shown (once).
LATE_COMMIT_WINDOW = 10.0


class Command(BaseCommand):
    help = "Watch, list, enqueue, cancel and retry jobs (docs/cli.md)."

    def add_arguments(self, parser: Any) -> None:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument(
            "--as",
            dest="as_user",
            metavar="USERNAME",
            help="Act as this user: the access policy decides, and the event log names them (default: the system).",
        )
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        watch = actions.add_parser("watch", parents=[common], help="Live progress bars until the jobs end.")
        watch.add_argument("ids", nargs="*", metavar="ID", help="Jobs to watch (default: your active jobs).")
        watch.add_argument("--user", metavar="NAME", help="Watch this user's active jobs.")
        watch.add_argument("--all", action="store_true", help="Watch every active job you may see.")
        watch.add_argument("--interval", type=float, default=0.2, help="Seconds between reads of the event log.")

        listing = actions.add_parser("list", parents=[common], help="A table of jobs, newest first.")
        listing.add_argument("--status", action="append", choices=JobStatus.values, help="Repeat for several.")
        listing.add_argument("--type", dest="job_type", metavar="TYPE")
        listing.add_argument("--queue")
        listing.add_argument("--user", metavar="NAME", help="The owner's username.")
        listing.add_argument("--limit", type=int, default=20)
        listing.add_argument("--json", action="store_true", help="JSON for scripts instead of a table.")

        enqueue = actions.add_parser("enqueue", parents=[common], help="Queue a job: TYPE key=value ...")
        enqueue.add_argument("job_type", metavar="TYPE")
        enqueue.add_argument("pairs", nargs="*", metavar="key=value", help="Params; values are JSON where they parse.")
        enqueue.add_argument("--queue")
        enqueue.add_argument("--priority", type=int)
        enqueue.add_argument("--json", action="store_true", help="Print the job as JSON.")

        for name, what in (("cancel", "Cancel a job."), ("retry", "Retry a failed or cancelled job.")):
            action = actions.add_parser(name, parents=[common], help=what)
            action.add_argument("job_id", metavar="ID")
            action.add_argument("--json", action="store_true", help="Print the job as JSON.")

    def handle(self, *args: Any, action: str, as_user: str | None = None, **options: Any) -> None:
        self.actor = _actor(as_user)
        out = getattr(self.stdout, "_out", sys.stdout)
        # Not a terminal (a pipe, a file): whole rows, for grep and friends.
        self.console = Console(file=out, highlight=False, width=None if out.isatty() else 240)
        if action == "watch":
            self.watch(
                ids=options["ids"], username=options["user"], everyone=options["all"], interval=options["interval"]
            )
        elif action == "list":
            self.list_jobs(**options)
        elif action == "enqueue":
            self.enqueue(**options)
        else:
            self.act(action, options["job_id"], as_json=options["json"])

    # --- what the actor may see ---------------------------------------------------------------
    def visible(self) -> QuerySet[Job]:
        if self.actor is None:
            return Job.objects.all()
        return policy.visible_jobs(user=self.actor)

    def find(self, job_id: str) -> Job:
        try:
            pk = uuid.UUID(job_id)
        except ValueError:
            pk = None
        job = self.visible().filter(pk=pk).select_related("user").first() if pk else None
        if job is None:  # worded the same whether or not it exists
            raise CommandError(f"No job {job_id} that you may see.", returncode=NOT_FOUND)
        return job

    # --- list --------------------------------------------------------------------------------
    def list_jobs(self, *, status: list[str] | None, job_type: str | None, queue: str | None, user: str | None,
             limit: int, json: bool, **options: Any) -> None:  # fmt: skip
        if limit < 1:
            raise CommandError("--limit must be at least 1.", returncode=INVALID)
        data: dict[str, Any] = {"status": status or [], "type": job_type or "", "queue": queue or ""}
        if user is not None:
            data["user"] = str(_user(user).pk)
        filters = JobFilter(data=data, queryset=self.visible())
        if not filters.is_valid():
            raise CommandError(_problems(filters.errors), returncode=INVALID)
        jobs = list(filters.qs.order_by("-created_at", "-pk")[:limit])
        selectors.attach_owner_usernames(jobs)
        if json:
            self.stdout.write(_json([_row(job) for job in jobs]))
            return
        table = Table()
        for column in ("ID", "Type", "Status", "Progress", "Step", "User", "Created"):
            table.add_column(column, no_wrap=column in ("ID", "Created"))
        for job in jobs:
            table.add_row(
                str(job.pk), job.type, job.status, f"{job.progress:.0f}%", job.step_name or "",
                _username(job), job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )  # fmt: skip
        self.console.print(table)

    # --- enqueue, cancel, retry ----------------------------------------------------------------
    def enqueue(self, *, job_type: str, pairs: list[str], queue: str | None, priority: int | None, json: bool,
                **options: Any) -> None:  # fmt: skip
        params = _params(pairs)
        try:
            job = services.job_enqueue(
                job_type=job_type, params=params, user=self.actor, queue=queue, priority=priority, actor=self.actor
            )
        except UnknownJobType:
            raise CommandError(f"type: Unknown job type {job_type!r}.", returncode=INVALID) from None
        except serializers.ValidationError as exc:
            raise CommandError(_problems({"params": exc.detail}), returncode=INVALID) from None
        except QueueNotFound as exc:
            raise CommandError(f"queue: {exc}", returncode=INVALID) from None
        except policy.AccessDenied as exc:
            raise CommandError(str(exc), returncode=NOT_FOUND) from None
        self.done(job, as_json=json, verb="Queued")

    def act(self, action: str, job_id: str, *, as_json: bool) -> None:
        job = self.find(job_id)
        if self.actor is not None and not policy.may_act_on_job(user=self.actor, job=job):
            raise CommandError(policy.ACT_ON_OTHERS, returncode=NOT_FOUND)
        service = services.job_cancel if action == "cancel" else services.job_retry
        try:
            job = service(job=job, actor=self.actor)
        except TransitionNotAllowed as exc:
            raise CommandError(str(exc), returncode=CONFLICT) from None
        except JobError as exc:
            raise CommandError(str(exc), returncode=CONFLICT) from None
        self.done(job, as_json=as_json, verb="Cancel requested for" if job.cancel_requested else f"{action.title()}:")

    def done(self, job: Job, *, as_json: bool, verb: str) -> None:
        if as_json:
            self.stdout.write(_json(_row(job)))
        else:
            self.stdout.write(f"{verb} {job.pk} ({job.type}, {job.status}).")

    # --- watch -------------------------------------------------------------------------------
    def watch(self, *, ids: list[str], username: str | None, everyone: bool, interval: float) -> None:
        if ids and (username or everyone):
            raise CommandError("Give job ids, or --user, or --all.", returncode=INVALID)
        if ids:
            jobs = [self.find(job_id) for job_id in dict.fromkeys(ids)]
        else:
            active = self.visible().filter(status__in=ACTIVE)
            if username is not None:
                active = active.filter(user=_user(username))
            elif not everyone and self.actor is not None:
                active = active.filter(user=self.actor)
            jobs = list(active.order_by("created_at", "pk"))
        if not jobs:
            self.stdout.write("No jobs to watch.")
            return
        states = Watch(jobs, console=self.console, interval=interval).run()
        not_completed = [state for state in states.values() if state["status"] != JobStatus.COMPLETED]
        for state in states.values():
            error = f": {state['error']}" if state.get("error") else ""
            self.console.print(f"{state['id']} {state['type']} {state['status']}{error}", markup=False)
        if not_completed:
            raise CommandError(
                f"{len(not_completed)} of {len(states)} jobs did not complete.", returncode=JOB_NOT_COMPLETED
            )


class Watch:
    """Progress bars for ``jobs`` fed by the event log until every job is in a final state.

    Each job's bar starts from its row; then every event of the jobs (a report, a log line, a
    status change) updates it, in ``event_id`` order. The rows are read again every second as well,
    so the watch ends even if an event were missed.
    """

    def __init__(self, jobs: list[Job], *, console: Console, interval: float) -> None:
        self.states: dict[str, dict[str, Any]] = {str(job.pk): job_snapshot(job) for job in jobs}
        self.console = console
        self.interval = max(interval, 0.05)
        self.floor = selectors.job_event_latest_id()
        self.seen: set[int] = set()
        self.highest: deque[tuple[float, int]] = deque()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def run(self) -> dict[str, dict[str, Any]]:
        with self.progress:
            for job_id, state in self.states.items():
                self.tasks[job_id] = self.progress.add_task(
                    f"{job_id[:8]} {state['type']}", total=100, detail=""
                )  # fmt: skip
                self.show(job_id)
            last_rows = time.monotonic()
            while not self.finished():
                time.sleep(self.interval)
                self.read_events()
                if time.monotonic() - last_rows >= 1.0:
                    self.read_rows()
                    last_rows = time.monotonic()
        return self.states

    def finished(self) -> bool:
        return all(state["status"] in FINAL for state in self.states.values())

    def read_events(self) -> None:
        now = time.monotonic()
        while self.highest and now - self.highest[0][0] > LATE_COMMIT_WINDOW:
            self.floor = max(self.floor, self.highest.popleft()[1])
        events = JobEvent.objects.filter(job_id__in=list(self.states), id__gt=self.floor).order_by("id")
        highest = self.floor
        for event in events.iterator():
            highest = max(highest, event.id)
            if event.id in self.seen:
                continue
            self.seen.add(event.id)
            job_id = str(event.job_id)
            for line in event.payload.get("lines", ()):
                self.progress.console.print(f"{job_id[:8]} {line.get('message', '')}", markup=False)
            snapshot = event.payload.get("job")
            if snapshot and self.states[job_id]["status"] not in FINAL:
                self.states[job_id] = snapshot
                self.show(job_id)
        self.highest.append((now, highest))
        self.seen = {event_id for event_id in self.seen if event_id > self.floor}

    def read_rows(self) -> None:
        for job in Job.objects.filter(pk__in=list(self.states), status__in=FINAL):
            job_id = str(job.pk)
            if self.states[job_id]["status"] not in FINAL:
                self.states[job_id] = job_snapshot(job)
                self.show(job_id)

    def show(self, job_id: str) -> None:
        state = self.states[job_id]
        counts = ""
        if state.get("total_items"):
            counts = f" {state['processed_items']}/{state['total_items']}"
        step = f" {state['step_name']}" if state.get("step_name") else ""
        completed = 100 if state["status"] == JobStatus.COMPLETED else state.get("progress") or 0
        self.progress.update(self.tasks[job_id], completed=completed, detail=f"{state['status']}{step}{counts}")


def _actor(username: str | None) -> Any:
    if username is None:
        return None
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None or not user.is_active:
        raise CommandError(f"No active user {username!r}.", returncode=NOT_FOUND)
    return user


def _user(username: str) -> Any:
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"user: No user {username!r}.", returncode=INVALID)
    return user


def _params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as params: a value is JSON where it parses (``items=5``, ``tags=["a"]``), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{pair!r} is not key=value.", returncode=INVALID)
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _problems(detail: Any, prefix: str = "") -> str:
    """DRF or django-filter errors as ``field.sub: message`` lines."""
    if isinstance(detail, dict):
        return "\n".join(_problems(value, f"{prefix}.{key}" if prefix else str(key)) for key, value in detail.items())
    if isinstance(detail, list) and all(not isinstance(item, dict | list) for item in detail):
        return "\n".join(f"{prefix}: {item}" for item in detail)
    if isinstance(detail, list):
        return "\n".join(_problems(item, f"{prefix}.{index}") for index, item in enumerate(detail))
    return f"{prefix}: {detail}"


def _username(job: Job) -> str:
    name = getattr(job, "owner_username", None)
    if name is None and job.user_id:
        name = job.user.get_username() if job.user else ""
    return name or ""


def _row(job: Job) -> dict[str, Any]:
    """A job for scripts: the shape of a websocket ``job-update``'s job, and the params."""
    return {**job_snapshot(job), "params": job.params, "username": _username(job)}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
