"""Claims racing in separate database sessions (PostgreSQL; SQLite runs one writer at a time).

A claim holds its queue slot's row lock until it commits. Claims of the same queue must not
wait for each other while free slots remain, and a claim that finds the only free-looking
slot locked waits for that claim's outcome instead of giving up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections, transaction

from jobs import services
from jobs.models import Job, JobStatus, Queue

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "test-host:1"


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent claims need PostgreSQL's row locks (CI runs this)")


class HeldClaim:
    """A claim in another session whose transaction stays open until ``end``."""

    def __init__(self, queue: str) -> None:
        self.claimed: Job | None = None
        self._ready = threading.Event()
        self._end = threading.Event()
        self._commit = True
        self._thread = threading.Thread(target=self._run, args=(queue,))
        self._thread.start()
        assert self._ready.wait(10), "the held claim did not start"

    def _run(self, queue: str) -> None:
        class Rollback(Exception):
            pass

        try:
            with transaction.atomic():
                self.claimed = services.job_claim(queue=queue, worker="holder:1")
                self._ready.set()
                self._end.wait(20)
                if not self._commit:
                    raise Rollback
        except Rollback:
            pass
        finally:
            self._ready.set()
            connections.close_all()

    def end(self, *, commit: bool) -> None:
        self._commit = commit
        self._end.set()
        self._thread.join(10)


@pytest.fixture
def held() -> Iterator[list[HeldClaim]]:
    claims: list[HeldClaim] = []
    yield claims
    for claim in claims:
        claim.end(commit=True)


def claim_with_lock_timeout(queue: str, seconds: float) -> Job | None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'")
        return services.job_claim(queue=queue, worker=WORKER)


def limit(queue: str, concurrency: int) -> None:
    # Tables are emptied between these tests (transaction=True): the row may not exist yet.
    Queue.objects.update_or_create(name=queue, defaults={"concurrency": concurrency})
    services.queue_add_missing_slots(queue)


def enqueue(queue: str, count: int) -> list[Job]:
    return [services.job_enqueue(job_type="demo", params={"items": 1}, queue=queue) for _ in range(count)]


def test_claims_of_one_queue_do_not_wait_for_each_other(held: list[HeldClaim]) -> None:
    limit("high", 2)
    enqueue("high", 2)
    held.append(HeldClaim("high"))
    assert held[0].claimed is not None

    started = time.monotonic()
    mine = claim_with_lock_timeout("high", 2)  # a wait for the held claim's lock would raise

    assert mine is not None
    assert mine.pk != held[0].claimed.pk
    assert time.monotonic() - started < 1.5


def test_a_claim_waits_for_the_claim_holding_the_last_slot_and_gets_nothing_if_it_commits() -> None:
    limit("high", 1)
    enqueue("high", 2)
    holder = HeldClaim("high")
    assert holder.claimed is not None
    outcome: list[Any] = []
    waiter = threading.Thread(target=claim_into, args=(outcome,))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "the second claim waits for the first one's outcome"

    holder.end(commit=True)
    waiter.join(10)

    assert outcome == [None]
    assert Job.objects.filter(queue="high", status=JobStatus.RUNNING).count() == 1


def test_a_claim_waits_for_the_claim_holding_the_last_slot_and_takes_it_if_that_one_rolls_back() -> None:
    limit("high", 1)
    jobs = enqueue("high", 2)
    holder = HeldClaim("high")
    assert holder.claimed is not None
    assert holder.claimed.pk == jobs[0].pk
    outcome: list[Any] = []
    waiter = threading.Thread(target=claim_into, args=(outcome,))
    waiter.start()
    time.sleep(0.3)

    holder.end(commit=False)
    waiter.join(10)

    assert len(outcome) == 1
    assert outcome[0] is not None
    assert outcome[0].pk == jobs[0].pk, "the rolled-back claim's job is the best again"
    assert set(Job.objects.filter(queue="high", status=JobStatus.RUNNING).values_list("pk", flat=True)) == {jobs[0].pk}


def claim_into(outcome: list[Any]) -> None:
    """In its own thread and session: claim from ``high`` and keep what came back."""
    try:
        outcome.append(services.job_claim(queue="high", worker=WORKER))
    finally:
        connections.close_all()
