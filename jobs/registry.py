"""The job type registry and the ``@job`` decorator.

A job type is a function ``fn(ctx, params)`` registered under a name, with its queue,
steps, params serializer (validated before anything is queued and published as JSON
Schema), timeout, attempts, retry backoff and stall policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Literal

from django.apps import apps
from django.conf import settings
from rest_framework import serializers

from jobs.limits import params_problems

# ``fn(ctx, params)``: ``ctx`` is a ``jobs.context.JobContext``. The registry sits below the
# context (which calls the services, which look types up here), so it does not name the class.
JobFunction = Callable[[Any, dict[str, Any]], Any]
StallPolicy = Literal["fail", "requeue"]


class NoParams(serializers.Serializer):
    """Params serializer for job types that take none."""


@dataclass(frozen=True)
class JobType:
    name: str
    func: JobFunction
    queue: str = "default"
    steps: tuple[str, ...] = ()
    params: type[serializers.Serializer] = NoParams
    description: str = ""
    timeout: int = 600
    max_attempts: int = 1
    # Seconds before attempt n+1 is `retry_backoff * 2 ** (n - 1)`, capped at `retry_backoff_max`.
    retry_backoff: float = 10.0
    retry_backoff_max: float = 3600.0
    stall_policy: StallPolicy = "fail"
    priority: int = 0
    # Continues from its checkpoints (docs/jobs.md): a pause, a worker's shutdown or a
    # requeue after a stall suspends it and a later run picks up where it stopped. False:
    # pausing is refused, and after a stall it follows its ``stall_policy``.
    resumable: bool = True
    # Who may queue it (``jobs.policy.may_run_job_type``): a permission ``"app.codename"``,
    # ``jobs.policy.STAFF``, or None for any signed-in user.
    permission: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # In place of ``params``' serializer at enqueue (its JSON Schema is still ``params``'): a
    # function of the params mapping that returns them cleaned or raises the serializer's
    # ``ValidationError``, for a type whose params need no field machinery (a ``task:`` type's
    # arguments, jobs.django_tasks). The size limits and the unknown-key rule apply before it.
    clean_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def backoff_for(self, attempt: int) -> float:
        """The delay before the attempt after ``attempt`` (1-based)."""
        return float(min(self.retry_backoff * 2 ** max(attempt - 1, 0), self.retry_backoff_max))

    def validate_params(self, data: Any) -> dict[str, Any]:
        """Validated params, or ``serializers.ValidationError`` with field messages."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Params must be a JSON object."]})
        # Bounded before the serializer reads them (jobs.limits), whatever the way in.
        if too_big := params_problems(data):
            raise serializers.ValidationError(too_big)
        if self.clean_params is not None or self.params is NoParams:
            known = self.params._declared_fields  # the class's fields, without building an instance's
            if unknown := sorted(set(data) - set(known)):
                raise serializers.ValidationError({key: ["Unknown parameter."] for key in unknown})
            # A type that takes no params needs no serializer to say so (a sixth of a bulk enqueue).
            return {} if self.clean_params is None else self.clean_params(data)
        serializer = self.params(data=data)
        unknown = sorted(set(data) - set(serializer.fields))
        if unknown:
            raise serializers.ValidationError({key: ["Unknown parameter."] for key in unknown})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class UnknownJobType(LookupError):
    pass


_registry: dict[str, JobType] = {}


def job(
    name: str,
    *,
    queue: str = "default",
    steps: list[str] | tuple[str, ...] = (),
    params: type[serializers.Serializer] = NoParams,
    description: str = "",
    timeout: int = 600,
    max_attempts: int = 1,
    retry_backoff: float = 10.0,
    retry_backoff_max: float = 3600.0,
    stall_policy: StallPolicy = "fail",
    priority: int = 0,
    resumable: bool = True,
    permission: str | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Register ``fn(ctx, params)`` as the job type ``name``.

    ``permission`` (``"app.codename"``, or ``"staff"``) restricts who may queue it, at every
    way a job is queued (see ``jobs.policy.may_run_job_type``).
    """

    def decorator(func: JobFunction) -> JobFunction:
        if queue not in settings.JOBADMIN_QUEUES:
            raise ValueError(f"Job type {name!r}: unknown queue {queue!r}")
        if not 0 < timeout <= settings.JOBADMIN_MAX_JOB_TIMEOUT:
            raise ValueError(
                f"Job type {name!r}: timeout must be between 1 and JOBADMIN_MAX_JOB_TIMEOUT "
                f"({settings.JOBADMIN_MAX_JOB_TIMEOUT}) seconds"
            )
        if max_attempts < 1:
            raise ValueError(f"Job type {name!r}: max_attempts must be at least 1")
        if stall_policy not in ("fail", "requeue"):
            raise ValueError(f"Job type {name!r}: stall_policy must be 'fail' or 'requeue'")
        if permission is not None and permission != "staff" and permission.count(".") != 1:
            raise ValueError(f"Job type {name!r}: permission must be 'app.codename' or 'staff'")
        existing = _registry.get(name)
        if existing is not None and existing.func is not func and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"Job type {name!r} is registered twice")
        _registry[name] = JobType(
            name=name,
            func=func,
            queue=queue,
            steps=tuple(steps),
            params=params,
            description=description or (func.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            timeout=timeout,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            stall_policy=stall_policy,
            priority=priority,
            resumable=resumable,
            permission=permission,
        )
        return func

    return decorator


def register(job_type: JobType) -> None:
    """Register a ready-made type (``jobs.django_tasks`` registers one per ``@task`` function:
    its checks are Django's ``validate_task``, not ``job``'s)."""
    _registry[job_type.name] = job_type


def get_job_type(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobType(name) from None


def all_job_types() -> list[JobType]:
    return sorted(_registry.values(), key=lambda t: t.name)


def unregister(name: str) -> None:
    """Remove a job type (tests register throwaway types)."""
    _registry.pop(name, None)


def autodiscover() -> None:
    """Import ``<app>.jobs`` of every installed app, so their ``@job`` types register."""
    for config in apps.get_app_configs():
        try:
            import_module(f"{config.name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.jobs":
                raise
