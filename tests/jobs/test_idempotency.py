"""``Idempotency-Key`` on ``POST /api/jobs/`` (DESIGN.md, "JSON API"): the same key from the
same user within 24 h returns the first job instead of queuing again — after a broken
connection, a 503, a double submit or two requests at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from jobs import retention, services
from jobs.models import EventKind, IdempotencyKey, Job, JobEvent

URL = "/api/jobs/"
DEMO = {"type": "demo", "params": {"items": 3, "delay_ms": 1}}


def post(client: Any, body: dict[str, Any], key: str | None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(URL, body, format="json", **headers)


@pytest.fixture
def client(api_client: Any, user: Any) -> Any:
    api_client.force_authenticate(user)
    return api_client


def test_the_same_key_again_returns_the_first_job_and_queues_nothing(client: Any) -> None:
    first = post(client, DEMO, "order-1")
    again = post(client, {"type": "demo", "params": {"delay_ms": 1, "items": 3}}, "order-1")  # keys in another order

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Job.objects.count() == 1
    assert JobEvent.objects.filter(kind=EventKind.CREATED).count() == 1


def test_without_a_key_each_request_queues_a_job(client: Any) -> None:
    post(client, DEMO, None)
    post(client, DEMO, None)
    assert Job.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


def test_a_key_sent_with_another_request_is_a_422_and_writes_nothing(client: Any) -> None:
    post(client, DEMO, "order-2")
    for other in ({"type": "demo", "params": {"items": 4}}, {**DEMO, "priority": -5}, {**DEMO, "queue": "high"}):
        response = post(client, other, "order-2")
        assert response.status_code == 422, other
        assert response.json()["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_a_key_is_the_users_own(client: Any, other_user: Any, api_client: Any) -> None:
    from rest_framework.test import APIClient

    mine = post(client, DEMO, "shared-text").json()["id"]
    theirs_client = APIClient()
    theirs_client.force_authenticate(other_user)
    theirs = post(theirs_client, DEMO, "shared-text")
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert theirs.json()["id"] != mine
    assert Job.objects.get(pk=theirs.json()["id"]).user == other_user


def test_after_24_hours_the_key_queues_a_new_job(client: Any) -> None:
    first = post(client, DEMO, "daily").json()["id"]
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    later = post(client, DEMO, "daily")
    assert later.status_code == 201
    assert later.json()["id"] != first
    assert list(IdempotencyKey.objects.values_list("job_id", flat=True)) == [Job.objects.get(pk=later.json()["id"]).pk]


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "clé", "tab\there"])
def test_a_bad_key_is_a_400_naming_the_header_and_writes_nothing(client: Any, key: str) -> None:
    response = post(client, DEMO, key)
    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()
    assert not Job.objects.exists()


def test_a_quoted_key_is_the_same_key(client: Any) -> None:
    # The IETF draft sends it as a structured-field string: "…".
    first = post(client, DEMO, '"8e03978e-40d5-43e8-bc93-6894a57f9324"').json()["id"]
    again = post(client, DEMO, "8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert again.json()["id"] == first


def test_a_refused_request_keeps_no_key_so_the_corrected_one_may_use_it(client: Any) -> None:
    refused = post(client, {"type": "demo", "params": {"items": -1}}, "fix-me")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert post(client, DEMO, "fix-me").status_code == 201


def test_the_purge_forgets_keys_older_than_24_hours_and_keeps_their_jobs(client: Any) -> None:
    post(client, DEMO, "old")
    post(client, DEMO, "new")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert retention.purge_idempotency_keys_batch(batch=10) == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Job.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_enqueues_with_one_key_at_once_queue_one_job(user: Any) -> None:
    """The second arrives while the first's transaction is still open: on PostgreSQL its key
    insert waits on the unique index, on SQLite its BEGIN waits for the write lock; either
    way it ends with the first's job, and its own job is rolled back."""
    asked = {"key": "at-once", "user": user, "job_type": "demo", "params": {"items": 2}}
    entered, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                outcomes["first"] = services.job_enqueue_once(**asked)
                entered.set()
                release.wait(10)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            outcomes["second"] = services.job_enqueue_once(**asked)
        except Exception as exc:  # reported below
            outcomes["second"] = exc
        finally:
            connections.close_all()

    holder = threading.Thread(target=first)
    holder.start()
    assert entered.wait(10)
    racer = threading.Thread(target=second)
    racer.start()
    time.sleep(0.5)
    assert racer.is_alive(), f"the second did not wait for the first: {outcomes.get('second')!r}"
    release.set()
    holder.join(10)
    racer.join(10)

    assert not outcomes["first"].replayed
    assert isinstance(outcomes["second"], services.Enqueued), outcomes["second"]
    assert outcomes["second"].replayed
    assert outcomes["second"].job.pk == outcomes["first"].job.pk
    assert Job.objects.count() == 1
    assert JobEvent.objects.filter(kind=EventKind.CREATED).count() == 1
