"""``JobAdminBackend`` through Django's public task API only, as Django's own tests exercise a
backend: ``enqueue``, ``get_result``, ``refresh``, the statuses, the signals. The worker's side
is the engine's ``run_next`` (what a django-q2 worker runs), in this process."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from jobs import services
from jobs.policy import AccessDenied
from jobs.tasks import run_next
from tests.dtasks import tasks
from tests.dtasks.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_says_what_it_supports() -> None:
    backend = task_backends["default"]
    assert type(backend).__module__ == "jobs.django_tasks"
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_enqueue_then_get_result_follows_the_job() -> None:
    result = tasks.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert not result.is_finished
    assert result.attempts == 0
    assert result.args == [2]
    assert result.kwargs == {"b": 3}
    assert result.enqueued_at is not None
    assert result.started_at is None
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    fetched = tasks.add.get_result(result.id)
    assert fetched.id == result.id
    assert fetched.status == TaskResultStatus.READY

    assert run_next("default") == result.id  # the TaskResult's id is the job's
    assert result.status == TaskResultStatus.READY  # a result is a snapshot until refreshed
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished
    assert result.return_value == 5
    assert result.attempts == 1
    assert len(result.worker_ids) == 1
    assert result.worker_ids[0]
    assert result.started_at
    assert result.finished_at
    assert result.last_attempted_at
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.errors == []


def test_a_task_that_raises_fails_with_its_traceback() -> None:
    result = tasks.fails.enqueue("no luck")
    run_next("default")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class is tasks.Refused
    assert "no luck" in error.traceback
    assert "raise Refused(message)" in error.traceback


def test_retries_keep_each_attempts_error_and_worker(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    result = tasks.fails_once_then_counts.enqueue(marker)
    run_next("default")
    result.refresh()
    assert result.status == TaskResultStatus.READY  # queued again after its back-off
    assert len(result.errors) == 1
    assert result.attempts == 1
    deadline = timezone.now() + timedelta(seconds=10)
    while run_next("default") is None and timezone.now() < deadline:
        pass
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "second"
    assert result.attempts == 2
    assert len(result.worker_ids) == 2
    assert [e.exception_class for e in result.errors] == [tasks.Refused]


def test_get_result_of_an_unknown_id_or_another_task() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("not-a-uuid")
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("00000000-0000-0000-0000-000000000000")
    job = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    with pytest.raises(TaskResultDoesNotExist):  # a job, but not a task's
        task_backends["default"].get_result(str(job.pk))
    other = tasks.add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        tasks.fails.get_result(other.id)


@pytest.mark.parametrize(
    "args", [(datetime(2026, 1, 1, tzinfo=UTC),), (object(),), (math.nan,), ({1: "int key"},), ({"a": {2, 3}},)]
)
def test_arguments_that_do_not_survive_json_are_refused_and_nothing_is_queued(args: tuple[Any, ...]) -> None:
    from jobs.models import Job

    with pytest.raises((TypeError, ValueError)):
        tasks.add.enqueue(*args)
    assert not Job.objects.exists()


def test_an_unknown_queue_is_refused() -> None:
    from jobs.models import Job

    with pytest.raises(InvalidTask, match="nowhere"):
        tasks.add.using(queue_name="nowhere").enqueue(1, 2)
    assert not Job.objects.exists()


def test_a_task_not_at_module_level_is_refused() -> None:
    from tests.dtasks.compat import task

    def local() -> None:
        pass

    with pytest.raises(InvalidTask, match="module level"):
        task()(local)


def test_priority_and_queue_become_the_jobs() -> None:
    from jobs.models import Job

    low = tasks.noop.using(priority=-50).enqueue()
    high = tasks.noop.enqueue()  # priority=10 on the decorator, queue "high"
    top = tasks.noop.using(priority=100).enqueue()
    assert Job.objects.get(pk=high.id).priority == 10
    assert Job.objects.get(pk=high.id).queue == "high"
    with pytest.raises(InvalidTask, match="priority"):
        tasks.noop.using(priority=101)
    run_next("high")  # one wake-up runs them one after the other, best first
    order = [
        r.id for r in sorted((tasks.noop.get_result(x.id) for x in (low, high, top)), key=lambda r: str(r.started_at))
    ]
    assert order == [top.id, high.id, low.id]  # higher first, as Django's priority means


def test_run_after_delays_the_start() -> None:
    result: Any = tasks.add.using(run_after=timezone.now() + timedelta(seconds=1.5)).enqueue(1, 1)
    assert run_next("default") is None  # not before its time
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY
    deadline = timezone.now() + timedelta(seconds=10)
    while run_next("default") is None and timezone.now() < deadline:
        pass
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= result.enqueued_at + timedelta(seconds=1.4)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose.enqueue(1, 1)


def test_an_async_task_runs_and_aenqueue_aget_result_work() -> None:
    result = async_to_sync(tasks.async_add.aenqueue)(4, 5)
    run_next("default")
    fetched = async_to_sync(tasks.async_add.aget_result)(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 9
    async_to_sync(result.arefresh)()
    assert result.return_value == 9
    assert asyncio.iscoroutinefunction(tasks.async_add.func)


def test_signals_are_sent_where_django_sends_them() -> None:
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def on(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, task_result.id, str(task_result.status)))

        return on

    handlers = {"enqueued": receiver("enqueued"), "started": receiver("started"), "finished": receiver("finished")}
    task_enqueued.connect(handlers["enqueued"])
    task_started.connect(handlers["started"])
    task_finished.connect(handlers["finished"])
    try:
        ok = tasks.add.enqueue(1, 2)
        assert seen == [("enqueued", ok.id, TaskResultStatus.READY)]
        run_next("default")
        bad = tasks.fails.enqueue("x")
        run_next("default")
    finally:
        task_enqueued.disconnect(handlers["enqueued"])
        task_started.disconnect(handlers["started"])
        task_finished.disconnect(handlers["finished"])
    assert seen == [
        ("enqueued", ok.id, TaskResultStatus.READY),
        ("started", ok.id, TaskResultStatus.RUNNING),
        ("finished", ok.id, TaskResultStatus.SUCCESSFUL),
        ("enqueued", bad.id, TaskResultStatus.READY),
        ("started", bad.id, TaskResultStatus.RUNNING),
        ("finished", bad.id, TaskResultStatus.FAILED),
    ]


def test_a_first_runs_started_result_is_the_claims_job_read_from_no_query() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.models import Job

    seen: list[tuple[dict[str, Any], int]] = []
    queries = CaptureQueriesContext(connection)

    def on(sender: Any, task_result: Any, **kwargs: Any) -> None:
        fields = ("id", "status", "args", "kwargs", "enqueued_at", "started_at", "last_attempted_at", "worker_ids")
        seen.append(({name: getattr(task_result, name) for name in fields}, len(queries.captured_queries)))

    result = tasks.add.enqueue(2, 3)
    task_started.connect(on)
    try:
        with queries:
            run_next("default")
    finally:
        task_started.disconnect(on)
    ((started, before_signal),) = seen
    job = Job.objects.get(pk=result.id)
    assert started == {
        "id": result.id,
        "status": "RUNNING",
        "args": [2, 3],
        "kwargs": {},
        "enqueued_at": job.created_at,
        "started_at": job.started_at,
        "last_attempted_at": job.started_at,
        "worker_ids": [job.worker],
    }
    # Between the claim and the signal nothing reads the job again (a ``.get()``): the claim's row says it all.
    gets = [q["sql"] for q in queries.captured_queries[:before_signal] if 'FROM "jobs_job"' in q["sql"]]
    assert not [sql for sql in gets if "LIMIT 21" in sql], gets


def test_takes_context_gets_djangos_context_and_the_jobs_progress() -> None:
    from jobs.models import EventKind, Job

    result = tasks.counts.enqueue(n=7)
    run_next("default")
    result.refresh()
    assert result.return_value == {"attempt": 1, "id": result.id, "n": 7}
    job = Job.objects.get(pk=result.id)
    assert job.progress == 100
    assert job.processed_items == 7
    assert job.steps == ["count"]
    lines = [line["message"] for e in job.events.filter(kind=EventKind.LOG) for line in e.payload["lines"]]
    assert "counted 7" in lines


def test_enqueue_is_nobodys_unless_acting_as_a_user(user: Any, other_user: Any) -> None:
    from jobs.django_tasks import acting_as
    from jobs.models import Job

    nobody = tasks.add.enqueue(1, 1)
    assert Job.objects.get(pk=nobody.id).user_id is None
    with acting_as(user):
        mine = tasks.add.enqueue(1, 1)
    assert Job.objects.get(pk=mine.id).user_id == user.pk
    # The policy decides: a task needing a permission the user lacks is refused, nothing queued.
    from jobs import registry

    staff_only = registry.get_job_type("task:tests.dtasks.tasks.add")
    registry.register(staff_only.__class__(**{**staff_only.__dict__, "permission": "staff"}))
    try:
        with acting_as(other_user), pytest.raises(AccessDenied):
            tasks.add.enqueue(1, 1)
    finally:
        registry.register(staff_only)
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    "params",
    [{}, {"args": [1, "a"]}, {"kwargs": {"n": [1]}}, {"args": "x"}, {"kwargs": []}, {"args": [object()]}, {"extra": 1}],
)
def test_a_task_types_params_are_checked_as_its_serializer_checks_them(params: dict[str, Any]) -> None:
    """The fast path (``clean_task_params``, no serializer built per enqueue) gives what
    ``TaskParams``' serializer gives: the same cleaned params, or the same field messages."""
    import dataclasses

    from rest_framework import serializers

    from jobs.django_tasks import _register, job_type_name
    from jobs.registry import get_job_type

    _register(tasks.add)
    fast = get_job_type(job_type_name(tasks.add))
    assert fast.clean_params is not None
    slow = dataclasses.replace(fast, clean_params=None)

    def outcome(jtype: Any) -> Any:
        try:
            return jtype.validate_params(params)
        except serializers.ValidationError as exc:
            return exc.detail

    assert outcome(fast) == outcome(slow)


def test_a_task_argument_that_is_not_finite_json_is_refused_before_anything_is_stored() -> None:
    from jobs.models import Job

    with pytest.raises(Exception, match="not JSON|JSON"):
        tasks.add.enqueue(math.nan, 1)  # type: ignore[arg-type]  # the point: not an int
    with pytest.raises(Exception, match="valid JSON"):
        services.job_enqueue(job_type=_task_type(tasks.add), params={"args": [math.inf]})
    assert not Job.objects.exists()


def _task_type(task: Any) -> str:
    from jobs.django_tasks import _register, job_type_name

    _register(task)
    return job_type_name(task)
