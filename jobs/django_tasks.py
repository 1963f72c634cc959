"""Django's task framework on JobAdmin: ``JobAdminBackend``, a ``BaseTaskBackend`` (docs/django-tasks.md).

A function decorated with ``@task`` and enqueued through Django's API becomes a job of type
``task:<module path>``; the ``TaskResult``'s id is the job's id, and ``get_result`` reads the
job back. The function runs on the django-q2 workers through the engine like any job type
(claim, slots, heartbeats, time-outs, retries, stall clean-up, cancel, pause where it can
continue). JobAdmin's extensions are options of ``@task(...)`` (``JobAdminTask``'s fields)
and, for a task with ``takes_context=True``, ``context.job`` (the job's ``JobContext``).

    TASKS = {"default": {"BACKEND": "jobs.django_tasks.JobAdminBackend"}}
"""

from __future__ import annotations

import contextvars
import json
import traceback as tb
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

# The one place that knows where the task framework lives: Django 6.0+ ships it as
# ``django.tasks``; on Django 5.2 the ``django-tasks`` backport (0.12) is the same API under
# the package ``django_tasks`` (its ``InvalidTask`` is spelt ``InvalidTaskError``).
try:
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.base import Task, TaskError  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[assignment,no-redef,unused-ignore]
    from django_tasks.signals import task_enqueued, task_finished, task_started  # type: ignore[assignment,no-redef,unused-ignore]

from jobs import registry, services
from jobs.exceptions import JobCancelled, JobLost, JobSuspended, JobTimedOut, QueueNotFound
from jobs.models import EventKind, Job, JobResult, JobStatus
from jobs.registry import JobType, StallPolicy

__all__ = [
    "JobAdminBackend",
    "JobAdminTask",
    "JobAdminTaskContext",
    "Task",
    "acting_as",
    "job_type_name",
    "task_backends",
]

PREFIX = "task:"

# A job's status as Django's four: a paused job has started and not finished (RUNNING); a
# cancelled one will not finish (FAILED, with a ``jobs.exceptions.JobCancelled`` error).
STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.PAUSED: TaskResultStatus.RUNNING,
    JobStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

_acting_as: contextvars.ContextVar[Any] = contextvars.ContextVar("jobadmin_task_user", default=None)


@contextmanager
def acting_as(user: Any) -> Iterator[None]:
    """Enqueue as ``user``: the job is theirs (they see and act on it) and the policy decides
    whether they may run it (``@task(permission=...)``), refusing with ``policy.AccessDenied``.

    Outside it an enqueue is the system's (no owner, no check), as a job queued by code is.
    """
    token = _acting_as.set(user)
    try:
        yield
    finally:
        _acting_as.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAdminTask(Task):  # type: ignore[misc,unused-ignore]  # django-stubs' Task is not frozen
    """Django's ``Task`` with JobAdmin's options, given to ``@task(...)`` (the backend's
    ``task_class``): ``@task(max_attempts=3, timeout=60)``. The job type's fields of the
    same names (docs/jobs.md)."""

    max_attempts: int = 1
    timeout: int = 600
    retry_backoff: float = 10.0
    retry_backoff_max: float = 3600.0
    stall_policy: StallPolicy = "fail"
    # A task continues from a checkpoint only if it saves one (``context.job.save_cursor``):
    # pausing is refused unless it says it does.
    resumable: bool = False
    steps: tuple[str, ...] = ()
    permission: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAdminTaskContext(TaskContext):  # type: ignore[misc,unused-ignore]
    """Django's ``TaskContext``, and ``job``: the job's ``jobs.context.JobContext``
    (``progress``, ``step``, ``iterate``, ``log``, ``cursor``, ``save_cursor``, ``checkpoint``)."""

    job: Any


ARGS_MESSAGE = "A list of positional arguments."
KWARGS_MESSAGE = "An object of keyword arguments."


class TaskParams(serializers.Serializer):
    """A task job's params: the call's arguments (JSON fields: cheaper to build than a
    ``ListField``'s child per enqueue, and ``enqueue`` has checked the JSON already)."""

    args = serializers.JSONField(required=False, default=list)  # type: ignore[arg-type]  # stubs want a mapping
    kwargs = serializers.JSONField(required=False, default=dict)

    def validate_args(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise serializers.ValidationError(ARGS_MESSAGE)
        return value

    def validate_kwargs(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError(KWARGS_MESSAGE)
        return value


def clean_task_params(data: dict[str, Any]) -> dict[str, Any]:
    """``TaskParams``' rules without building its serializer on every enqueue (a third of the
    params' cost): ``args`` a list, ``kwargs`` an object, both JSON. The same field messages."""
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    errors: dict[str, list[str]] = {}
    if not isinstance(args, list):
        errors["args"] = [ARGS_MESSAGE]
    if not isinstance(kwargs, dict):
        errors["kwargs"] = [KWARGS_MESSAGE]
    if not errors:
        for name, value in (("args", args), ("kwargs", kwargs)):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                errors[name] = ["Value must be valid JSON."]  # JSONField's own message
    if errors:
        raise serializers.ValidationError(errors)
    return {"args": args, "kwargs": kwargs}


def job_type_name(task: Any) -> str:
    return f"{PREFIX}{task.module_path}"


def _error(message: str) -> Exception:
    return InvalidTask(message)


def _json(args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments as stored; ``TypeError``/``ValueError`` (as Django's own backends raise) if
    they do not come back from JSON as they went in."""
    params = {"args": list(args), "kwargs": dict(kwargs)}
    try:
        text = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Task arguments must survive JSON: {exc}") from None
    if json.loads(text) != {"args": _listed(params["args"]), "kwargs": _listed(params["kwargs"])}:
        raise ValueError("Task arguments must survive JSON (a mapping's keys must be strings).")
    return params


def _listed(value: Any) -> Any:
    """Tuples as JSON gives them back, lists (Django normalises them the same way)."""
    if isinstance(value, tuple | list):
        return [_listed(v) for v in value]
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    return value


class JobAdminBackend(BaseTaskBackend):
    """Runs Django tasks as JobAdmin jobs.

    ``QUEUES`` defaults to ``JOBADMIN_QUEUES``' names; ``priority`` is the job's priority as
    it is (both run from -100 to 100, higher first); ``run_after`` is the job's delayed start.
    """

    task_class = JobAdminTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if "QUEUES" not in params:
            self.queues = set(settings.JOBADMIN_QUEUES)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if len(job_type_name(task)) > (Job._meta.get_field("type").max_length or 0):
            raise _error(f"The task's job type {job_type_name(task)!r} is longer than a job type may be.")
        if isinstance(task, JobAdminTask):
            if not 0 < task.timeout <= settings.JOBADMIN_MAX_JOB_TIMEOUT:
                raise _error(
                    f"timeout must be between 1 and JOBADMIN_MAX_JOB_TIMEOUT ({settings.JOBADMIN_MAX_JOB_TIMEOUT}) s."
                )
            if task.max_attempts < 1:
                raise _error("max_attempts must be at least 1.")
            if task.stall_policy not in ("fail", "requeue"):
                raise _error("stall_policy must be 'fail' or 'requeue'.")
            if task.permission is not None and task.permission != "staff" and task.permission.count(".") != 1:
                raise _error("permission must be 'app.codename' or 'staff'.")
        _register(task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        params = _json(args, kwargs)
        try:
            job = services.job_enqueue(
                job_type=job_type_name(task),
                params=params,
                user=_acting_as.get(),
                queue=task.queue_name,
                priority=task.priority,
                run_after=task.run_after,
            )
        except QueueNotFound as exc:
            raise _error(str(exc)) from None
        except serializers.ValidationError as exc:
            raise _error(f"Task arguments refused: {exc.detail}") from None
        result = _result(task, job, backend=self.alias, errors=[], worker_ids=[])
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: Any) -> Any:
        try:
            job = Job.objects.select_related("result").get(pk=uuid.UUID(str(result_id)), type__startswith=PREFIX)
        except (ValueError, Job.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        task = _task_of(job.type)
        if task is None:
            raise TaskResultDoesNotExist(f"{result_id}: {job.type} is not a task here")
        return result_of(job, task, backend=self.alias)


# --- The job type of a task ------------------------------------------------------------------


def _register(task: Any) -> None:
    """The task's job type, so that workers, the API and the pages know it."""
    name = job_type_name(task)
    try:
        known = registry.get_job_type(name)
    except registry.UnknownJobType:
        known = None
    if known is not None and known.extra.get("func") is task.func and known.extra.get("base") == _base(task):
        return
    options = task  # a JobAdminTask; a plain Task (another task_class) gets the defaults
    registry.register(
        JobType(
            name=name,
            func=_run,
            queue=task.queue_name,
            steps=tuple(getattr(options, "steps", ())),
            params=TaskParams,
            clean_params=clean_task_params,
            description=getattr(options, "description", "") or (task.func.__doc__ or "").strip().split("\n\n")[0],
            timeout=getattr(options, "timeout", 600),
            max_attempts=getattr(options, "max_attempts", 1),
            retry_backoff=getattr(options, "retry_backoff", 10.0),
            retry_backoff_max=getattr(options, "retry_backoff_max", 3600.0),
            stall_policy=getattr(options, "stall_policy", "fail"),
            priority=task.priority,
            resumable=getattr(options, "resumable", False),
            permission=getattr(options, "permission", None),
            extra={"task": task, "func": task.func, "base": _base(task)},
        )
    )


def _base(task: Any) -> Any:
    """What of a task its job type holds (``.using()`` changes only the call, not the type)."""
    return (task.backend, task.takes_context, *(getattr(task, f, None) for f in ("max_attempts", "timeout")))


def _task_of(job_type: str) -> Any:
    """The ``Task`` of a ``task:`` job type: registered when its module was imported; else (a
    worker that has not imported it) its module path is imported, which registers it."""
    try:
        return registry.get_job_type(job_type).extra["task"]
    except (registry.UnknownJobType, KeyError):
        pass
    if not job_type.startswith(PREFIX):
        return None
    from django.utils.module_loading import import_string

    try:
        found = import_string(job_type[len(PREFIX) :])
    except ImportError:
        return None
    if not isinstance(found, Task) or not isinstance(found.get_backend(), JobAdminBackend):
        return None
    _register(found)
    return found


def load_job_type(name: str) -> JobType | None:
    """For a worker: the job type of a ``task:`` job whose module is not imported yet.

    Only the worker asks, for a job that an enqueue stored: a name from a request never
    imports a module."""
    if _task_of(name) is None:
        return None
    return registry.get_job_type(name)


def _run(ctx: Any, params: dict[str, Any]) -> Any:
    """The job function of every task: the signals around Django's ``Task.call``."""
    task = registry.get_job_type(ctx.job_type).extra["task"]
    args, kwargs = list(params.get("args", [])), dict(params.get("kwargs", {}))
    backend = task.get_backend()
    if ctx.attempt == 1 and not ctx.continued:
        # A first run (the common case): the claim says it all, without reading the row or its events.
        result: Any = TaskResult(
            task=task,
            id=str(ctx.job_id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=ctx.enqueued_at,
            started_at=ctx.started_at,
            finished_at=None,
            last_attempted_at=ctx.started_at,
            args=params.get("args", []),
            kwargs=params.get("kwargs", {}),
            backend=backend.alias,
            errors=[],
            worker_ids=[ctx.worker],
        )
    else:
        result = result_of(Job.objects.get(pk=ctx.job_id), task, backend=backend.alias)
    sender = type(backend)
    task_started.send(sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(JobAdminTaskContext(task_result=result, job=ctx), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except (JobSuspended, JobLost):
        raise  # it continues later (a pause, a worker's stop), or is another worker's now
    except (Exception, JobCancelled, JobTimedOut) as exc:  # the last two are BaseExceptions
        _finished(sender, result, TaskResultStatus.FAILED, exc)
        raise
    object.__setattr__(result, "_return_value", value)
    _finished(sender, result, TaskResultStatus.SUCCESSFUL, None)
    return value


def _finished(sender: Any, result: Any, status: Any, exc: BaseException | None) -> None:
    """``task_finished`` as Django sends it: in the ``except`` block when the task raised."""
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    if exc is not None:
        result.errors.append(TaskError(exception_class_path=_path(type(exc)), traceback=tb.format_exc()))
    task_finished.send(sender, task_result=result)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- The job as a TaskResult ------------------------------------------------------------------


def _result(task: Any, job: Job, *, backend: str, errors: list[Any], worker_ids: list[str]) -> Any:
    params = job.params or {}
    return TaskResult(
        task=task,
        id=str(job.pk),
        status=STATUS[JobStatus(job.status)],
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=None,
        args=params.get("args", []),
        kwargs=params.get("kwargs", {}),
        backend=backend,
        errors=errors,
        worker_ids=worker_ids,
    )


# Attempts end in these events with the attempt's error.
_ERROR_EVENTS = (EventKind.FAILED, EventKind.STALLED)


def result_of(job: Job, task: Any, *, backend: str) -> Any:
    """The ``TaskResult`` of ``job`` as it is now.

    ``worker_ids`` has one worker per attempt (Django's ``attempts`` is its length) and
    ``last_attempted_at`` is the last attempt's start, from the job's ``started`` events.
    ``errors`` has one per failed attempt, the last with its full traceback (the job keeps
    one), the earlier ones with their error line; a cancelled job ends with a
    ``jobs.exceptions.JobCancelled`` error.
    """
    workers: dict[int, str] = {}
    last_started: datetime | None = None
    errors: list[Any] = []
    events = job.events.filter(kind__in=(EventKind.STARTED, *_ERROR_EVENTS)).order_by("id")
    failures = []
    for kind, payload, created_at in events.values_list("kind", "payload", "created_at"):
        if kind == EventKind.STARTED:
            attempt = int(payload.get("attempt") or payload["job"]["attempts"])
            workers.setdefault(attempt, payload["job"].get("worker", ""))
            last_started = created_at
        else:
            failures.append(str(payload.get("error") or payload["job"].get("error") or ""))
    for n, line in enumerate(failures):
        last = n == len(failures) - 1 and job.traceback
        trace = job.traceback if last else line
        errors.append(TaskError(exception_class_path=_class_path(trace), traceback=trace))
    if job.status == JobStatus.CANCELLED:
        errors.append(TaskError(exception_class_path=_path(JobCancelled), traceback="Cancelled."))
    result = _result(task, job, backend=backend, errors=errors, worker_ids=[workers[a] for a in sorted(workers)])
    object.__setattr__(result, "last_attempted_at", last_started)
    if job.status == JobStatus.COMPLETED:
        try:
            value = job.result.data
        except JobResult.DoesNotExist:
            value = None
        object.__setattr__(result, "_return_value", value)
    return result


def _class_path(trace: str) -> str:
    """The exception's class from a traceback's (or an error's) last line: ``pkg.Error: ...``."""
    last = trace.strip().splitlines()[-1] if trace.strip() else "Exception"
    name = last.split(":", 1)[0].strip()
    return name if "." in name else f"builtins.{name}"
