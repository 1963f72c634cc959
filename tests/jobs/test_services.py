"""Every legal and illegal transition of the lifecycle, in-process (no worker processes).

Given a job in some status, when an action is applied, then the status, the flags and the
event log say exactly what happened — or the action is refused and nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from rest_framework.exceptions import ValidationError

from jobs import services
from jobs.exceptions import QueueNotFound, TransitionNotAllowed
from jobs.models import EventKind, Job, JobEvent, JobStatus, Queue, QueueSlot
from jobs.registry import UnknownJobType, job

pytestmark = pytest.mark.django_db

WORKER = "test-host:1"


@job("test-retrying", queue="default", max_attempts=3, retry_backoff=10, retry_backoff_max=15)
def retrying(ctx: Any, params: dict[str, Any]) -> None:
    raise RuntimeError("always fails")


@job("test-requeue-on-stall", queue="default", max_attempts=2, stall_policy="requeue")
def requeue_on_stall(ctx: Any, params: dict[str, Any]) -> None:
    pass


def enqueue(**kwargs: Any) -> Job:
    kwargs.setdefault("job_type", "demo")
    kwargs.setdefault("params", {"items": 3, "delay_ms": 0})
    return services.job_enqueue(**kwargs)


def running(**kwargs: Any) -> Job:
    created = enqueue(**kwargs)
    claimed = services.job_claim(queue=created.queue, worker=WORKER)
    assert claimed is not None
    assert claimed.pk == created.pk
    return claimed


def paused(**kwargs: Any) -> Job:
    job = running(**kwargs)
    services.job_pause(job=job)
    assert services.job_suspend(job_id=job.pk, worker=WORKER, attempt=job.attempts, values={})
    job.refresh_from_db()
    return job


def completed(**kwargs: Any) -> Job:
    job = running(**kwargs)
    assert services.job_complete(job_id=job.pk, worker=WORKER, attempt=job.attempts, values={}, result={"ok": 1})
    job.refresh_from_db()
    return job


def failed(**kwargs: Any) -> Job:
    job = running(**kwargs)
    services.job_fail(job_id=job.pk, worker=WORKER, attempt=job.attempts, error="boom")
    job.refresh_from_db()
    return job


def cancelled(**kwargs: Any) -> Job:
    job = enqueue(**kwargs)
    return services.job_cancel(job=job)


def last_event(job: Job) -> JobEvent:
    event = job.events.order_by("id").last()
    assert event is not None
    return event


def claim() -> Job:
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    return claimed


def kinds(job: Job) -> list[str]:
    return list(job.events.order_by("id").values_list("kind", flat=True))


def snapshot(job: Job) -> tuple[Any, int]:
    row = Job.objects.filter(pk=job.pk).values().get()
    return row, JobEvent.objects.count()


# --- Enqueue --------------------------------------------------------------------------------


def test_enqueue_stores_validated_params_with_defaults_and_records_created_by_the_user(user):
    job = enqueue(params={"items": 7}, user=user)

    assert job.status == JobStatus.QUEUED
    assert job.params == {"items": 7, "delay_ms": 100, "fail_at": None}
    assert job.steps == ["Prepare", "Process", "Summarise"]
    event = job.events.get()
    assert (event.kind, event.actor_id, event.owner_id) == (EventKind.CREATED, user.pk, user.pk)
    assert event.payload["job"]["status"] == "queued"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"items": 0}, "items"),
        ({"items": "many"}, "items"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_enqueue_with_bad_params_raises_field_errors_and_writes_nothing(params, field):
    with pytest.raises(ValidationError) as excinfo:
        enqueue(params=params)

    assert field in excinfo.value.detail
    assert Job.objects.count() == 0
    assert JobEvent.objects.count() == 0


def test_enqueue_of_an_unknown_type_or_queue_is_refused_before_anything_is_written():
    with pytest.raises(UnknownJobType):
        enqueue(job_type="no-such-type")
    with pytest.raises(QueueNotFound):
        enqueue(queue="no-such-queue")
    assert Job.objects.count() == 0


@pytest.fixture
def sent_wakeups(django_capture_on_commit_callbacks: Any) -> Any:
    """``with sent_wakeups() as sent: ...``, then ``sent.count``: the wake-ups that reached the
    broker, whether it takes them after the commit (Redis) or in the transaction (the ORM)."""
    broker = get_broker()

    @contextmanager
    def counting() -> Iterator[SimpleNamespace]:
        sent = SimpleNamespace(count=0)
        before = broker.queue_size()
        with django_capture_on_commit_callbacks(execute=True):
            yield sent
        sent.count = broker.queue_size() - before

    broker.purge_queue()
    yield counting
    broker.purge_queue()


def test_enqueue_wakes_a_worker_only_after_the_transaction_commits(django_capture_on_commit_callbacks):
    broker = get_broker()
    broker.purge_queue()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue()
    if services.broker_in_the_jobs_database():
        # The ORM broker's row is written in the job's own transaction: it commits with it.
        assert callbacks == []
    else:
        assert broker.queue_size() == 0, "no wake-up may be sent before the commit"
        for callback in callbacks:
            callback()
    assert broker.queue_size() == 1
    broker.purge_queue()


def test_an_enqueue_rolled_back_leaves_no_wake_up_behind(django_capture_on_commit_callbacks):
    broker = get_broker()
    broker.purge_queue()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):  # noqa: PT012
        with transaction.atomic():
            enqueue()
            raise RuntimeError("the caller's transaction fails after the enqueue")

    assert Job.objects.count() == 0
    assert broker.queue_size() == 0
    broker.purge_queue()


# --- Claim ----------------------------------------------------------------------------------


def test_claim_takes_the_highest_priority_then_the_oldest_job():
    low = enqueue(priority=0)
    high_old = enqueue(priority=5)
    enqueue(priority=5)

    claimed = services.job_claim(queue="default", worker=WORKER)

    assert claimed is not None
    assert claimed.pk == high_old.pk
    assert claimed.status == JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.worker == WORKER
    assert claimed.queue_wait is not None
    assert claimed.queue_wait >= 0
    low.refresh_from_db()
    assert low.status == JobStatus.QUEUED


def test_claim_holds_the_queue_concurrency_limit():
    Queue.objects.filter(name="high").update(concurrency=2)
    for _ in range(3):
        enqueue(queue="high")

    assert services.job_claim(queue="high", worker=WORKER) is not None
    assert services.job_claim(queue="high", worker=WORKER) is not None
    assert services.job_claim(queue="high", worker=WORKER) is None

    assert Job.objects.filter(queue="high", status=JobStatus.RUNNING).count() == 2


def test_a_paused_job_gives_its_slot_back_so_the_next_job_of_its_queue_runs():
    Queue.objects.filter(name="high").update(concurrency=1)
    paused(queue="high")
    waiting = enqueue(queue="high")

    claimed = services.job_claim(queue="high", worker=WORKER)
    assert claimed is not None
    assert claimed.pk == waiting.pk


def test_claim_skips_a_paused_queue_and_a_job_whose_backoff_has_not_expired():
    job = enqueue()
    services.queue_pause(name="default")
    assert services.job_claim(queue="default", worker=WORKER) is None

    services.queue_resume(name="default")
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() + timedelta(minutes=1))
    assert services.job_claim(queue="default", worker=WORKER) is None

    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(seconds=1))
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    assert claimed.pk == job.pk


def test_a_job_that_is_no_longer_queued_cannot_be_claimed_again():
    job = running()
    assert services.job_claim(queue="default", worker="other:2") is None
    job.refresh_from_db()
    assert job.worker == WORKER
    assert job.attempts == 1


# --- Cancel -----------------------------------------------------------------------------------


def test_cancel_of_a_queued_job_is_immediate(user):
    job = services.job_cancel(job=enqueue(), actor=user)

    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    event = last_event(job)
    assert (event.kind, event.actor_id) == (EventKind.CANCELLED, user.pk)


def test_cancel_of_a_running_job_is_a_request_that_takes_effect_at_the_next_checkpoint(user):
    job = services.job_cancel(job=running(), actor=user)

    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested
    assert kinds(job)[-1] == EventKind.CANCEL_REQUESTED

    assert services.job_mark_cancelled(job_id=job.pk, worker=WORKER, attempt=1, values={"processed_items": 2})
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.processed_items == 2
    assert kinds(job)[-1] == EventKind.CANCELLED


def test_cancel_of_a_paused_job_is_immediate_as_no_worker_holds_it():
    job = services.job_cancel(job=paused())

    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert not job.cancel_requested, "nobody is left to tell"
    control = services.job_heartbeat(job_id=job.pk, worker=WORKER, attempt=1)
    assert control.status == JobStatus.CANCELLED
    assert not control.owned


def test_cancel_twice_is_refused_with_a_clear_message():
    job = services.job_cancel(job=running())
    before = snapshot(job)

    with pytest.raises(TransitionNotAllowed, match="already requested"):
        services.job_cancel(job=job)
    assert snapshot(job) == before


@pytest.mark.parametrize("make", [completed, failed, cancelled])
def test_cancel_of_a_finished_job_is_refused_and_changes_nothing(make):
    job = make()
    before = snapshot(job)

    with pytest.raises(TransitionNotAllowed) as excinfo:
        services.job_cancel(job=job)

    assert excinfo.value.status == job.status
    assert snapshot(job) == before


# --- Pause and resume -------------------------------------------------------------------------------


def test_pause_of_a_running_job_suspends_it_at_a_checkpoint_and_resume_queues_it_to_continue(user):
    job = services.job_pause(job=running(), actor=user)
    assert job.status == JobStatus.RUNNING
    assert job.pause_requested

    checkpoint = {"step": 1, "cursor": 7}
    assert services.job_suspend(
        job_id=job.pk, worker=WORKER, attempt=1, values={"processed_items": 7, "checkpoint": checkpoint}
    )
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED
    assert job.worker == "", "a paused job holds no worker"
    assert held_slots() == set(), "a paused job holds no slot"
    assert job.checkpoint == {**checkpoint, "suspended": True}

    job = services.job_resume(job=job, actor=user)
    assert job.status == JobStatus.QUEUED
    assert not job.pause_requested
    assert kinds(job)[-3:] == [EventKind.PAUSE_REQUESTED, EventKind.PAUSED, EventKind.RESUMED]
    assert last_event(job).actor_id == user.pk

    # The next claim continues the same attempt from the checkpoint, figures kept.
    again = services.job_claim(queue=job.queue, worker="other-host:2")
    assert again is not None
    assert again.pk == job.pk
    assert (again.attempts, again.processed_items, again.checkpoint) == (1, 7, checkpoint)


def test_resume_before_the_pause_took_effect_withdraws_it():
    job = services.job_pause(job=running())
    job = services.job_resume(job=job)

    assert job.status == JobStatus.RUNNING
    assert not job.pause_requested
    # The worker's next heartbeat reads no pause: its job runs on.
    assert not services.job_heartbeat(job_id=job.pk, worker=WORKER, attempt=1).pause_requested
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.parametrize("make", [enqueue, paused, completed, failed, cancelled])
def test_pause_of_a_job_that_is_not_running_is_refused_and_changes_nothing(make):
    job = make()
    before = snapshot(job)

    with pytest.raises(TransitionNotAllowed, match="Only a running job can be paused"):
        services.job_pause(job=job)
    assert snapshot(job) == before


def test_pause_is_refused_while_a_pause_or_a_cancel_is_pending():
    job = services.job_pause(job=running())
    with pytest.raises(TransitionNotAllowed, match="already requested"):
        services.job_pause(job=job)

    other = services.job_cancel(job=running())
    with pytest.raises(TransitionNotAllowed, match="being cancelled"):
        services.job_pause(job=other)


@pytest.mark.parametrize("make", [enqueue, running, completed, failed, cancelled])
def test_resume_of_a_job_that_is_not_paused_is_refused_and_changes_nothing(make):
    job = make()
    before = snapshot(job)

    with pytest.raises(TransitionNotAllowed, match="Only a paused job can be resumed"):
        services.job_resume(job=job)
    assert snapshot(job) == before


# --- Complete, fail, retry ----------------------------------------------------------------------------


def test_complete_stores_the_result_duration_and_full_progress():
    job = completed()

    assert job.status == JobStatus.COMPLETED
    assert job.progress == 100
    assert job.result.data == {"ok": 1}
    assert job.duration is not None
    assert job.duration >= 0
    assert job.heartbeat_at is None


def test_only_the_owning_worker_and_attempt_may_finish_a_job():
    job = running()

    assert not services.job_complete(job_id=job.pk, worker="other:2", attempt=1, values={})
    assert not services.job_complete(job_id=job.pk, worker=WORKER, attempt=2, values={})
    assert services.job_fail(job_id=job.pk, worker="other:2", attempt=1, error="x") is None
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_a_failure_with_attempts_left_queues_the_next_attempt_after_an_exponential_backoff():
    job = running(job_type="test-retrying", params={})
    before = timezone.now()

    services.job_fail(job_id=job.pk, worker=WORKER, attempt=1, error="RuntimeError: first")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.error == "RuntimeError: first"
    assert job.run_after is not None
    assert 9.5 <= (job.run_after - before).total_seconds() <= 11

    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
    job = claim()
    assert job.attempts == 2
    services.job_fail(job_id=job.pk, worker=WORKER, attempt=2, error="RuntimeError: second")
    job.refresh_from_db()
    assert job.run_after is not None
    assert 14.5 <= (job.run_after - timezone.now()).total_seconds() <= 15.5, "backoff doubles, capped at 15 s"

    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
    job = claim()
    services.job_fail(job_id=job.pk, worker=WORKER, attempt=3, error="RuntimeError: third")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3
    errors = [e.payload["error"] for e in job.events.filter(kind=EventKind.FAILED).order_by("id")]
    assert errors == ["RuntimeError: first", "RuntimeError: second", "RuntimeError: third"]


@pytest.mark.parametrize("make", [failed, cancelled])
def test_retry_by_hand_queues_a_new_attempt_and_keeps_the_old_error_in_the_history(make, user):
    job = make()
    old_error = job.error

    job = services.job_retry(job=job, actor=user)

    assert job.status == JobStatus.QUEUED
    assert job.error == ""
    assert job.finished_at is None
    assert job.max_attempts == job.attempts + 1
    event = last_event(job)
    assert (event.kind, event.actor_id, event.payload["previous_error"]) == (EventKind.RETRIED, user.pk, old_error)
    claimed = services.job_claim(queue="default", worker=WORKER)
    assert claimed is not None
    assert claimed.pk == job.pk
    assert claimed.attempts == job.attempts + 1


@pytest.mark.parametrize("make", [enqueue, running, paused, completed])
def test_retry_of_a_job_that_is_not_failed_or_cancelled_is_refused_and_changes_nothing(make):
    job = make()
    before = snapshot(job)

    with pytest.raises(TransitionNotAllowed, match="Only a failed or cancelled job can be retried"):
        services.job_retry(job=job)
    assert snapshot(job) == before


# --- Stalled jobs -----------------------------------------------------------------------------------------


def _stale(job: Job, seconds: float = 600) -> None:
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_cleanup_fails_a_stalled_job_and_records_who_asked(staff_user):
    job = running()
    fresh = running()
    _stale(job)

    outcomes = services.jobs_cleanup_stalled(actor=staff_user)

    assert [(o.job_id, o.status) for o in outcomes] == [(str(job.pk), JobStatus.FAILED)]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "stopped sending heartbeats" in job.error
    event = last_event(job)
    assert (event.kind, event.actor_id) == (EventKind.STALLED, staff_user.pk)
    fresh.refresh_from_db()
    assert fresh.status == JobStatus.RUNNING


def test_cleanup_requeues_a_stalled_job_whose_type_says_so():
    job = running(job_type="test-requeue-on-stall", params={})
    _stale(job)

    services.jobs_cleanup_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.worker == ""


def test_cleanup_reports_a_stalled_job_past_its_timeout_as_timed_out():
    job = running()
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=job.timeout + 60))
    _stale(job)

    services.jobs_cleanup_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Timed out")


def test_a_worker_that_lost_its_job_to_the_cleanup_cannot_finish_it():
    job = running()
    _stale(job)
    services.jobs_cleanup_stalled()

    assert not services.job_complete(job_id=job.pk, worker=WORKER, attempt=1, values={})
    assert not services.job_heartbeat(job_id=job.pk, worker=WORKER, attempt=1).owned


# --- Queues and the dispatcher ----------------------------------------------------------------------------


def test_queue_pause_and_resume_are_recorded_and_refused_when_repeated(user):
    services.queue_pause(name="batch", actor=user)
    assert Queue.objects.get(name="batch").paused
    with pytest.raises(TransitionNotAllowed):
        services.queue_pause(name="batch")

    services.queue_resume(name="batch", actor=user)
    assert not Queue.objects.get(name="batch").paused
    with pytest.raises(TransitionNotAllowed):
        services.queue_resume(name="batch")
    assert list(JobEvent.objects.values_list("kind", "actor_id")) == [
        (EventKind.QUEUE_PAUSED, user.pk),
        (EventKind.QUEUE_RESUMED, user.pk),
    ]


def test_unknown_queue_cannot_be_paused():
    with pytest.raises(QueueNotFound):
        services.queue_pause(name="nope")


def test_enqueue_sends_no_more_wakeups_than_the_queue_can_use(sent_wakeups):
    Queue.objects.filter(name="high").update(concurrency=2)

    with sent_wakeups() as sent:
        for _ in range(7):
            enqueue(queue="high")

    assert sent.count == 2, "a wake-up claims jobs until its queue is empty: two cover a limit of two"
    assert Queue.objects.get(name="high").pending_wakeups == 2

    services.wakeup_received("high")
    assert Queue.objects.get(name="high").pending_wakeups == 1
    with sent_wakeups() as sent:
        enqueue(queue="high")
    assert sent.count == 1


def test_wakeups_counted_in_flight_that_no_worker_took_in_time_are_believed_lost(
    sent_wakeups: Any, settings: Any
) -> None:
    # Issue 14, item 6: after Redis restarted empty the count stayed at the limit and no
    # enqueue sent a wake-up until the monitor's dispatch tick reset it.
    settings.JOBADMIN_WAKEUP_LOST_AFTER = 3600
    Queue.objects.filter(name="high").update(concurrency=2)
    with sent_wakeups() as sent:
        for _ in range(3):
            enqueue(queue="high")
    assert sent.count == 2, "within the bound the count holds at the limit"

    # The broker lost them: no worker takes them, and past the bound they are forgotten.
    settings.JOBADMIN_WAKEUP_LOST_AFTER = 0.05
    time.sleep(0.1)
    with sent_wakeups() as sent:
        enqueue(queue="high")
    assert sent.count == 1, "a fresh wake-up replaces the lost ones"
    assert Queue.objects.get(name="high").pending_wakeups == 1, "the fresh one is the only one in flight"

    settings.JOBADMIN_WAKEUP_LOST_AFTER = 3600
    with sent_wakeups() as sent:
        enqueue(queue="high")
        enqueue(queue="high")
    assert sent.count == 1, "counted again from the fresh one, up to the limit"
    assert Queue.objects.get(name="high").pending_wakeups == 2


def test_cleaning_up_a_stalled_job_wakes_a_worker_for_the_jobs_waiting_behind_it(
    sent_wakeups,
):
    Queue.objects.filter(name="high").update(concurrency=1, pending_wakeups=1)
    stalled = running(queue="high")
    enqueue(queue="high")
    services.wakeup_received("high")
    _stale(stalled)

    with sent_wakeups() as sent:
        services.jobs_cleanup_stalled()

    assert sent.count == 1


def test_dispatch_tick_resets_the_inflight_count_when_the_broker_is_empty():
    broker = get_broker()
    broker.purge_queue()
    Queue.objects.filter(name="default").update(pending_wakeups=5, wakeup_sent_at=timezone.now())
    enqueue()  # sends nothing: the count says five are in flight

    assert services.dispatch_tick() == 1
    assert Queue.objects.get(name="default").pending_wakeups == 1
    broker.purge_queue()


def test_dispatch_tick_wakes_queues_whose_backoff_expired_and_idle_queues_with_work(
    django_capture_on_commit_callbacks,
):
    broker = get_broker()
    job = enqueue()
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() + timedelta(seconds=30))
    broker.purge_queue()  # the enqueue's own wake-up (written with the job on the ORM broker)

    assert services.dispatch_tick() == 0, "nothing is due yet"

    later = timezone.now() + timedelta(seconds=31)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.dispatch_tick(since=timezone.now(), now=later) == 1
    assert broker.queue_size() == 1
    broker.purge_queue()


# --- Queue slots: the concurrency limit's bookkeeping ---------------------------------------


def held_slots(queue: str = "high") -> set[Any]:
    return set(QueueSlot.objects.filter(queue=queue, job__isnull=False).values_list("job_id", flat=True))


def _end_by_completing(job: Job) -> None:
    assert services.job_complete(job_id=job.pk, worker=WORKER, attempt=job.attempts, values={})


def _end_by_failing(job: Job) -> None:
    assert services.job_fail(job_id=job.pk, worker=WORKER, attempt=job.attempts, error="boom") is not None


def _end_by_failing_into_a_retry(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(max_attempts=5)
    done = services.job_fail(job_id=job.pk, worker=WORKER, attempt=job.attempts, error="boom")
    assert done is not None
    assert done.status == JobStatus.QUEUED


def _end_by_cancelling_at_a_checkpoint(job: Job) -> None:
    services.job_cancel(job=job)
    assert services.job_mark_cancelled(job_id=job.pk, worker=WORKER, attempt=job.attempts, values={})


def _end_by_cancelling_it_paused(job: Job) -> None:
    services.job_pause(job=job)
    assert services.job_suspend(job_id=job.pk, worker=WORKER, attempt=job.attempts, values={})
    assert held_slots() == set(), "a paused job gives its slot back"
    services.job_cancel(job=Job.objects.get(pk=job.pk))


def _end_by_stalling(job: Job) -> None:
    _stale(job)
    assert len(services.jobs_cleanup_stalled()) == 1


@pytest.mark.parametrize(
    "end",
    [
        _end_by_completing,
        _end_by_failing,
        _end_by_failing_into_a_retry,
        _end_by_cancelling_at_a_checkpoint,
        _end_by_cancelling_it_paused,
        _end_by_stalling,
    ],
)
def test_every_way_out_of_running_frees_the_slot(end):
    Queue.objects.filter(name="high").update(concurrency=1)
    job = running(queue="high")
    waiting = enqueue(queue="high")
    assert held_slots() == {job.pk}
    assert services.job_claim(queue="high", worker=WORKER) is None, "the one slot is taken"

    end(job)

    assert Job.objects.get(pk=job.pk).status not in (JobStatus.RUNNING, JobStatus.PAUSED)
    assert held_slots() == set()
    claimed = services.job_claim(queue="high", worker=WORKER)
    assert claimed is not None
    assert claimed.pk in (waiting.pk, job.pk)  # a job queued again for a retry may come first
    assert held_slots() == {claimed.pk}


def test_a_raised_limit_takes_effect_at_once_and_a_lowered_one_as_jobs_end():
    Queue.objects.filter(name="high").update(concurrency=1)
    first = running(queue="high")
    for _ in range(3):
        enqueue(queue="high")
    assert services.job_claim(queue="high", worker=WORKER) is None

    Queue.objects.filter(name="high").update(concurrency=3)
    second = services.job_claim(queue="high", worker=WORKER)
    third = services.job_claim(queue="high", worker=WORKER)
    assert second is not None
    assert third is not None
    assert QueueSlot.objects.filter(queue="high").count() == 3

    Queue.objects.filter(name="high").update(concurrency=1)
    _end_by_completing(first)
    assert services.job_claim(queue="high", worker=WORKER) is None, "two still run, the limit is one"
    _end_by_completing(third)
    assert services.job_claim(queue="high", worker=WORKER) is None, "one still runs"
    _end_by_completing(second)
    assert services.job_claim(queue="high", worker=WORKER) is not None
    assert services.queue_active_count("high") == 1
    assert services.job_claim(queue="high", worker=WORKER) is None


def test_a_slot_left_behind_by_a_change_outside_the_services_is_freed_by_the_dispatch_tick():
    Queue.objects.filter(name="high").update(concurrency=1)
    job = running(queue="high")
    enqueue(queue="high")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)  # behind services' back
    assert services.job_claim(queue="high", worker=WORKER) is None

    services.dispatch_tick()

    assert held_slots() == set()
    assert services.job_claim(queue="high", worker=WORKER) is not None


def test_deleting_an_active_job_frees_its_slot():
    Queue.objects.filter(name="high").update(concurrency=1)
    job = running(queue="high")
    enqueue(queue="high")

    Job.objects.filter(pk=job.pk).delete()

    assert services.job_claim(queue="high", worker=WORKER) is not None
