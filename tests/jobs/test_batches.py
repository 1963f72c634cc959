"""Batches (jobs.services.batches): created all or nothing, status from the members,
``on_complete`` queued exactly once, cancel and retry-failed as one action each."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework import serializers

from jobs import services
from jobs.exceptions import IdempotencyKeyReused, TransitionNotAllowed
from jobs.models import Batch, EventKind, IdempotencyKey, Job, JobEvent, JobStatus

pytestmark = pytest.mark.django_db

DEMO: dict[str, Any] = {"type": "demo", "params": {"items": 3, "delay_ms": 0}}
WORKER = "test-host:1"


def create(user: Any, n: int = 3, **kwargs: Any) -> Batch:
    return services.batch_create(name="crawl", members=[DEMO] * n, user=user, actor=user, **kwargs)


def run(job: Job, *, fail: bool = False) -> None:
    """Claim ``job``'s queue until ``job`` is taken, then finish it as its worker would."""
    claimed = services.job_claim(queue=job.queue, worker=WORKER)
    assert claimed is not None
    assert claimed.pk == job.pk, "claims go in creation order"
    if fail:
        services.job_fail(job_id=claimed.pk, worker=WORKER, attempt=claimed.attempts, error="boom", retry=False)
    else:
        assert services.job_complete(job_id=claimed.pk, worker=WORKER, attempt=claimed.attempts, values={}, job=claimed)


def detail(caught: Any) -> Any:
    """A refusal's field messages (DRF types them as a list or a dict)."""
    return caught.value.detail


def members(batch: Batch) -> list[Job]:
    return list(Job.objects.filter(batch=batch).order_by("created_at", "id"))


def test_members_are_queued_in_one_go_with_the_batch_and_an_event_naming_the_actor(user):
    batch = create(user, 4)

    assert [job.status for job in members(batch)] == [JobStatus.QUEUED] * 4
    assert all(job.user_id == user.pk for job in members(batch))
    summary = services.batch_summary(batch)
    assert summary.status == "running"
    assert summary.counts[JobStatus.QUEUED] == 4
    assert summary.total == 4
    assert summary.progress == 0
    assert summary.eta is None
    event = JobEvent.objects.get(kind=EventKind.BATCH_CREATED)
    assert event.actor_id == user.pk
    assert event.payload["batch"]["members"] == 4
    created = JobEvent.objects.filter(kind=EventKind.CREATED).first()
    assert created is not None
    assert created.payload["job"]["batch"] == batch.pk


def test_an_invalid_member_queues_nothing_and_is_named_by_its_index(user):
    bad = [DEMO, DEMO, {"type": "demo", "params": {"items": "many"}}, {"type": "nope"}]

    with pytest.raises(serializers.ValidationError) as caught:
        services.batch_create(name="crawl", members=bad, user=user)

    assert set(detail(caught)["jobs"]) == {"2", "3"}
    assert "params" in detail(caught)["jobs"]["2"]
    assert not Batch.objects.exists()
    assert not Job.objects.exists()


def test_an_empty_batch_a_nameless_one_and_one_over_the_limit_are_refused(user):
    with pytest.raises(serializers.ValidationError) as empty:
        services.batch_create(name="crawl", members=[], user=user)
    assert "jobs" in detail(empty)
    with pytest.raises(serializers.ValidationError) as nameless:
        services.batch_create(name=" ", members=[DEMO], user=user)
    assert "name" in detail(nameless)
    with override_settings(JOBADMIN_BATCH_MAX=2), pytest.raises(serializers.ValidationError) as over:
        services.batch_create(name="crawl", members=[DEMO] * 3, user=user)
    assert "JOBADMIN_BATCH_MAX" in str(detail(over)["jobs"][0])
    assert not Batch.objects.exists()
    assert not Job.objects.exists()


def test_a_bad_on_complete_is_refused_before_anything_is_queued(user):
    with pytest.raises(serializers.ValidationError) as caught:
        create(user, on_complete={"type": "demo", "params": {"items": "x"}})
    assert "params" in detail(caught)["on_complete"]
    with pytest.raises(serializers.ValidationError) as unknown:
        create(user, on_complete={"type": "nope"})
    assert "type" in detail(unknown)["on_complete"]
    assert not Batch.objects.exists()
    assert not Job.objects.exists()


def test_completed_when_every_member_completed_and_on_complete_is_queued_once(user):
    batch = create(user, 2, on_complete={"type": "demo", "params": {"items": 1}})
    first, second = members(batch)

    run(first)
    batch.refresh_from_db()
    assert batch.finished_at is None
    assert batch.on_complete_job_id is None
    assert services.batch_summary(batch).progress == 50
    assert services.batch_summary(batch).eta is not None
    run(second)

    batch.refresh_from_db()
    assert batch.finished_at is not None
    follow_up = batch.on_complete_job
    assert follow_up is not None
    assert follow_up.batch_id is None
    assert follow_up.user_id == user.pk
    assert follow_up.params == {"items": 1, **{k: v for k, v in follow_up.params.items() if k != "items"}}
    summary = services.batch_summary(batch)
    assert (summary.status, summary.progress, summary.eta) == ("completed", 100, None)
    assert JobEvent.objects.filter(kind=EventKind.BATCH_FINISHED).count() == 1
    assert Job.objects.filter(type="demo", batch__isnull=True).count() == 1


def test_failed_when_a_member_failed_and_retry_queues_only_the_failed_members_once(user, staff_user):
    batch = create(user, 3, on_complete={"type": "demo", "params": {"items": 1}})
    a, b, c = members(batch)
    run(a)
    run(b, fail=True)
    run(c)
    batch.refresh_from_db()
    assert services.batch_summary(batch).status == "failed"
    assert services.batch_summary(batch).counts[JobStatus.FAILED] == 1
    on_complete = batch.on_complete_job_id
    assert on_complete is not None

    services.batch_retry(batch=batch, actor=staff_user)

    assert [job.status for job in members(batch)] == [JobStatus.COMPLETED, JobStatus.QUEUED, JobStatus.COMPLETED]
    event = JobEvent.objects.get(kind=EventKind.BATCH_RETRIED)
    assert event.actor_id == staff_user.pk
    assert event.payload["batch"]["members"] == [str(b.pk)]
    batch.refresh_from_db()
    assert batch.finished_at is None
    assert services.batch_summary(batch).status == "running"
    Job.objects.filter(pk=on_complete).update(status=JobStatus.CANCELLED)  # out of the claims' way
    run(b)
    batch.refresh_from_db()
    assert services.batch_summary(batch).status == "completed"
    assert batch.on_complete_job_id == on_complete, "on_complete is queued once, not again after a retry"
    with pytest.raises(TransitionNotAllowed):
        services.batch_retry(batch=batch, actor=user)


def test_cancel_cancels_every_unfinished_member_in_one_action(user):
    batch = create(user, 3)
    a, b, c = members(batch)
    run(a)
    running = services.job_claim(queue=b.queue, worker=WORKER)
    assert running is not None
    assert running.pk == b.pk

    services.batch_cancel(batch=batch, actor=user)

    statuses = {job.pk: job for job in members(batch)}
    assert statuses[a.pk].status == JobStatus.COMPLETED
    assert statuses[b.pk].status == JobStatus.RUNNING
    assert statuses[b.pk].cancel_requested
    assert statuses[c.pk].status == JobStatus.CANCELLED
    event = JobEvent.objects.get(kind=EventKind.BATCH_CANCELLED)
    assert event.actor_id == user.pk
    assert set(event.payload["batch"]["members"]) == {str(b.pk), str(c.pk)}
    assert services.batch_summary(batch).status == "running"
    assert services.job_mark_cancelled(job_id=b.pk, worker=WORKER, attempt=running.attempts, values={})
    batch.refresh_from_db()
    assert services.batch_summary(batch).status == "cancelled"
    assert batch.finished_at is not None
    with pytest.raises(TransitionNotAllowed):
        services.batch_cancel(batch=batch, actor=user)


def test_the_same_idempotency_key_returns_the_first_batch(user):
    first = services.batch_create_once(key="k1", name="crawl", members=[DEMO] * 2, user=user)
    again = services.batch_create_once(key="k1", name="crawl", members=[DEMO] * 2, user=user)

    assert not first.replayed
    assert again.replayed
    assert again.batch.pk == first.batch.pk
    assert Batch.objects.count() == 1
    assert Job.objects.count() == 2
    assert IdempotencyKey.objects.get(key="k1").batch_id == first.batch.pk
    with pytest.raises(IdempotencyKeyReused):
        services.batch_create_once(key="k1", name="other", members=[DEMO], user=user)
    assert Batch.objects.count() == 1
