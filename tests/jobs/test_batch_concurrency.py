"""Batches under concurrent sessions (PostgreSQL; SQLite runs one writer at a time): the last
members finishing at once on two workers queue ``on_complete`` exactly once, and two
requests with one ``Idempotency-Key`` create one batch."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from jobs import services
from jobs.models import Batch, Job

pytestmark = pytest.mark.django_db(transaction=True)

DEMO: dict[str, Any] = {"type": "demo", "params": {"items": 1, "delay_ms": 0}}


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent sessions need PostgreSQL's row locks (CI runs this)")


def in_threads(*targets: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(target: Any) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


@pytest.mark.parametrize("round_", range(3))
def test_the_last_two_members_finishing_at_once_queue_on_complete_exactly_once(user, round_):
    batch = services.batch_create(
        name="race", members=[DEMO, DEMO], user=user, on_complete={"type": "demo", "params": {"items": 2}}
    )
    claimed = [services.job_claim(queue="default", worker=f"w{i}:1") for i in range(2)]
    assert all(job is not None for job in claimed)
    both_written = threading.Barrier(2, timeout=10)

    def finish(job: Job) -> None:
        with transaction.atomic():
            assert services.job_complete(job_id=job.pk, worker=job.worker, attempt=job.attempts, values={}, job=job)
            # Each has written its member before the other commits: neither sees the other's finish
            # unless the batch's lock makes the later one wait for the earlier one's commit.
            try:
                both_written.wait()
            except threading.BrokenBarrierError:
                pass  # the other waits on the batch row lock: that is the serialisation at work
            time.sleep(0.2)

    assert in_threads(*(lambda job=job: finish(job) for job in claimed)) == []

    batch.refresh_from_db()
    assert batch.finished_at is not None
    assert batch.on_complete_job_id is not None
    assert Job.objects.filter(batch__isnull=True, params__items=2).count() == 1
    assert services.batch_summary(batch).status == "completed"


def test_two_concurrent_requests_with_one_idempotency_key_create_one_batch(user):
    results: list[Any] = []
    start = threading.Barrier(2, timeout=10)

    def request() -> None:
        start.wait()
        results.append(services.batch_create_once(key="same", name="crawl", members=[DEMO] * 50, user=user))

    assert in_threads(request, request) == []

    assert Batch.objects.count() == 1
    assert Job.objects.count() == 50
    assert {r.batch.pk for r in results} == {Batch.objects.get().pk}
    assert sorted(r.replayed for r in results) == [False, True]
