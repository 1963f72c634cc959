"""Fair queues: each owner's share of a queue's slots (docs/engine.md, "The scheduler's rule").

The attack: one user queues many jobs on ``high`` (2 slots), and another user's job waits
behind all of them. With the share (``JOBADMIN_USER_QUEUE_SHARE``, 0.5: one slot of two) the
other user's job takes the next slot that frees; alone, a user still fills every slot.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.core import checks
from django.db import connection, connections, transaction

from jobs import policy, services
from jobs.models import Job, JobStatus, Queue
from tests.conftest import grant, wait_for
from tests.factories import UserFactory

WORKER = "test-host:1"


def person() -> Any:
    return UserFactory()


def limit(queue: str, concurrency: int) -> None:
    Queue.objects.update_or_create(name=queue, defaults={"concurrency": concurrency})
    services.queue_add_missing_slots(queue)


def enqueue(user: Any, count: int = 1, *, queue: str = "high", priority: int | None = None) -> list[Job]:
    return [
        services.job_enqueue(job_type="demo", params={"items": 1}, user=user, queue=queue, priority=priority)
        for _ in range(count)
    ]


def claim(queue: str = "high") -> Job | None:
    return services.job_claim(queue=queue, worker=WORKER)


def finish_and_claim(job: Job, queue: str = "high") -> Job | None:
    return services.job_complete_and_claim(
        queue=queue, job_id=job.pk, worker=WORKER, attempt=job.attempts, values={}, job=job
    )


def running_owners(queue: str = "high") -> list[int | None]:
    return sorted(
        (j.user_id for j in Job.objects.filter(queue=queue, status=JobStatus.RUNNING)), key=lambda pk: pk or 0
    )


@pytest.mark.django_db
def test_alone_a_user_fills_every_slot_of_a_queue() -> None:
    limit("high", 2)
    alice = person()
    enqueue(alice, 5)

    assert claim() is not None
    assert claim() is not None, "nobody else waits: work-conserving"
    assert running_owners() == [alice.pk, alice.pk]


@pytest.mark.django_db
def test_another_users_job_takes_the_next_slot_before_the_backlog_of_a_user_over_their_share() -> None:
    limit("high", 2)
    alice, bob = person(), person()
    enqueue(alice, 12)
    first, second = claim(), claim()
    assert first is not None
    assert second is not None
    (bobs,) = enqueue(bob)

    nxt = finish_and_claim(first)

    assert nxt is not None
    assert nxt.pk == bobs.pk, "alice holds her share: bob's job goes first"
    assert running_owners() == sorted([alice.pk, bob.pk])
    # Back at one slot (her share), alice's next job takes the slot her second job frees.
    after = finish_and_claim(second)
    assert after is not None
    assert after.user_id == alice.pk
    assert Job.objects.filter(user=alice, status=JobStatus.QUEUED).count() == 9


@pytest.mark.django_db
def test_the_share_comes_before_priority() -> None:
    limit("high", 2)
    alice = grant(person(), policy.CHANGE_JOBS)
    bob = person()
    enqueue(alice, 4, priority=100)
    first = claim()
    assert first is not None
    (bobs,) = enqueue(bob, priority=-10)

    nxt = claim()

    assert nxt is not None
    assert nxt.pk == bobs.pk
    assert running_owners() == sorted([alice.pk, bob.pk])


@pytest.mark.django_db
def test_jobs_without_a_user_are_one_owner_the_system() -> None:
    limit("high", 2)
    bob = person()
    enqueue(None, 3)
    first = claim()
    assert first is not None
    assert first.user_id is None
    (bobs,) = enqueue(bob)

    nxt = claim()

    assert nxt is not None
    assert nxt.pk == bobs.pk


@pytest.mark.django_db
def test_a_user_at_their_share_still_takes_a_free_slot_when_only_their_jobs_wait() -> None:
    limit("high", 3)  # share: ceil(0.5 x 3) = 2
    alice, bob = person(), person()
    enqueue(alice, 5)
    (bobs,) = enqueue(bob)
    taken = [claim() for _ in range(3)]

    assert {j.pk for j in taken if j is not None} >= {bobs.pk}
    assert running_owners() == sorted([alice.pk, alice.pk, bob.pk])


@pytest.mark.django_db
def test_a_share_of_one_turns_the_rule_off(settings: Any) -> None:
    settings.JOBADMIN_USER_QUEUE_SHARE = 1
    limit("high", 2)
    alice, bob = person(), person()
    enqueue(alice, 3)
    first, _ = claim(), claim()
    assert first is not None
    enqueue(bob)

    nxt = finish_and_claim(first)

    assert nxt is not None
    assert nxt.user_id == alice.pk, "plain priority and age"


@pytest.mark.parametrize("share", [0, -0.5, 1.5, "half"])
def test_a_share_outside_zero_to_one_is_a_system_check_error(settings: Any, share: Any) -> None:
    settings.JOBADMIN_USER_QUEUE_SHARE = share
    errors = [m for m in checks.run_checks() if m.id == "jobs.E001"]
    assert len(errors) == 1
    assert errors[0].level == checks.ERROR


def test_the_default_share_of_a_two_slot_queue_is_one_slot() -> None:
    assert services.user_share(2) == 1
    assert services.user_share(5) == 3
    assert services.user_share(1) == 1


# --- across database sessions (PostgreSQL: claims run side by side) -------------------------------
@pytest.mark.django_db(transaction=True)
def test_two_claims_at_once_do_not_both_give_one_user_a_slot_while_another_users_job_waits() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("claims side by side need PostgreSQL's row locks (SQLite runs one writer at a time)")
    limit("high", 2)
    alice, bob = person(), person()
    enqueue(alice, 4)
    (bobs,) = enqueue(bob)
    held: list[Job | None] = []
    ready, end = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                held.append(services.job_claim(queue="high", worker="holder:1"))
                ready.set()
                end.wait(20)
        finally:
            ready.set()
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert ready.wait(10)
    assert held[0] is not None
    assert held[0].user_id == alice.pk
    outcome: list[Job | None] = []

    def second() -> None:
        try:
            outcome.append(services.job_claim(queue="high", worker=WORKER))
        finally:
            connections.close_all()

    other = threading.Thread(target=second)
    other.start()
    time.sleep(0.3)
    end.set()
    holder.join(10)
    other.join(10)

    assert outcome
    assert outcome[0] is not None
    assert outcome[0].pk == bobs.pk, "the uncommitted claim already gave alice her share"
    assert running_owners() == sorted([alice.pk, bob.pk])


# --- with real worker processes ------------------------------------------------------------------
@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_with_real_workers_another_users_job_runs_while_the_backlog_of_a_user_over_their_share_waits(
    processes: Any,
) -> None:
    from tests.jobs.test_processes import qcluster, wait_job

    services.queue_ensure_defaults()
    limit("high", 2)
    alice, bob = person(), person()
    for _ in range(8):
        services.job_enqueue(job_type="demo", params={"items": 8, "delay_ms": 50}, user=alice, queue="high")
    qcluster(processes, Q_WORKERS="3")
    wait_for(
        lambda: Job.objects.filter(user=alice, status=JobStatus.RUNNING).count() == 2,
        message="alice never filled both slots",
    )
    (bobs,) = enqueue(bob)

    done = wait_job(bobs, lambda j: j.status == JobStatus.COMPLETED, timeout=30, message="bob's job never ran")

    assert done.started_at is not None
    started_before = Job.objects.filter(user=alice, started_at__lt=done.started_at).count()
    assert started_before <= 3, f"{started_before} of alice's jobs started before bob's: he waited for her backlog"
    assert Job.objects.filter(user=alice, status=JobStatus.QUEUED).exists(), "her backlog was still waiting"


# --- priorities above the type's default (the access matrix has the API's rows) ----------------
@pytest.mark.django_db
def test_the_admin_enqueue_form_refuses_a_priority_above_the_default_without_change_job(client: Any) -> None:
    from django.urls import reverse

    viewer = grant(UserFactory.create(is_staff=True), policy.VIEW_JOBS)
    client.force_login(viewer)
    url = reverse("admin:jobs_job_enqueue_type", args=["demo"])
    form = {"items": "1", "delay_ms": "0", "fail_at": "", "_queue": "high"}

    refused = client.post(url, {**form, "_priority": "100"})

    assert refused.status_code == 400
    assert policy.CHANGE_JOBS in " ".join(refused.context["form"].non_field_errors())
    assert not Job.objects.exists()
    assert client.post(url, {**form, "_priority": "0"}).status_code == 302


@pytest.mark.django_db
def test_a_plain_users_priority_above_the_default_is_refused_by_the_service_and_queues_nothing() -> None:
    plain = person()
    with pytest.raises(policy.AccessDenied, match=policy.CHANGE_JOBS):
        services.job_enqueue(job_type="demo", params={"items": 1}, user=plain, priority=100)
    assert not Job.objects.exists()
    changer = grant(person(), policy.CHANGE_JOBS)
    assert services.job_enqueue(job_type="demo", params={"items": 1}, user=changer, priority=100).priority == 100
    # The system (no user: retention, schedules) is not asked.
    assert services.job_enqueue(job_type="demo", params={"items": 1}, priority=100).priority == 100
