"""Bulk enqueue: many jobs in one transaction, all of them or none (jobs.services.jobs_enqueue_many,
POST /api/jobs/bulk-enqueue/)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs import policy, services
from jobs.models import EventKind, Job, JobEvent, JobStatus, Queue
from jobs.registry import get_job_type
from tests.conftest import grant

pytestmark = pytest.mark.django_db

DEMO: dict[str, Any] = {"type": "demo", "params": {"items": 3, "delay_ms": 0}}


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def nothing_written() -> bool:
    return not Job.objects.exists() and not JobEvent.objects.filter(kind=EventKind.CREATED).exists()


# --- the service -----------------------------------------------------------------------------


def test_every_member_is_queued_with_its_own_created_event_in_the_order_given(user):
    members: list[Any] = [DEMO, {"type": "demo", "params": {"items": 5}, "priority": -5}, {**DEMO, "queue": "high"}]

    jobs = services.jobs_enqueue_many(members=members, user=user, actor=user)

    assert [job.type for job in jobs] == ["demo"] * 3
    stored = {job.pk: job for job in Job.objects.all()}
    assert set(stored) == {job.pk for job in jobs}
    assert [stored[job.pk].params["items"] for job in jobs] == [3, 5, 3]
    assert [stored[job.pk].queue for job in jobs] == ["default", "default", "high"]
    assert stored[jobs[1].pk].priority == -5
    assert all(job.status == JobStatus.QUEUED and job.user_id == user.pk for job in stored.values())
    events = list(JobEvent.objects.filter(kind=EventKind.CREATED).order_by("id"))
    assert [event.job_id for event in events] == [job.pk for job in jobs]
    assert all(event.actor_id == user.pk and event.owner_id == user.pk for event in events)
    assert events[1].payload["job"]["id"] == str(jobs[1].pk)


def test_one_bad_member_queues_nothing_and_each_bad_member_is_named_by_its_index(user):
    members: list[Any] = [
        DEMO,
        {"type": "demo", "params": {"items": "many"}},
        {"type": "no-such-type"},
        {**DEMO, "queue": "nowhere"},
        {**DEMO, "colour": "red"},
        {**DEMO, "priority": 500},
        {"params": {}},
    ]

    with pytest.raises(serializers.ValidationError) as refused:
        services.jobs_enqueue_many(members=members, user=user, actor=user)

    problems: Any = refused.value.detail["jobs"]  # type: ignore[call-overload]
    assert sorted(problems) == ["1", "2", "3", "4", "5", "6"]
    assert "items" in problems["1"]["params"]
    assert "no-such-type" in str(problems["2"]["type"][0])
    assert "nowhere" in str(problems["3"]["queue"][0])
    assert problems["4"] == {"colour": ["Unknown field."]}
    assert "priority" in problems["5"]
    assert "type" in problems["6"]
    assert nothing_written()


def test_a_member_the_user_may_not_run_refuses_the_whole_call(user):
    members: list[Any] = [DEMO, DEMO, {"type": "purge-history", "params": {}}]

    with pytest.raises(policy.AccessDenied, match=r"^Job 2: .*purge"):
        services.jobs_enqueue_many(members=members, user=user, actor=user)

    assert nothing_written()


def test_a_priority_above_the_types_default_needs_the_permission_per_member(user):
    with pytest.raises(policy.AccessDenied, match=r"^Job 1: .*priority"):
        services.jobs_enqueue_many(members=[DEMO, {**DEMO, "priority": 50}], user=user, actor=user)
    assert nothing_written()

    allowed = grant(user, "jobs.change_job")
    jobs = services.jobs_enqueue_many(members=[DEMO, {**DEMO, "priority": 50}], user=allowed, actor=allowed)
    assert [job.priority for job in jobs] == [0, 50]


def test_an_empty_call_and_one_over_the_limit_are_refused(user):
    with pytest.raises(serializers.ValidationError, match="at least one"):
        services.jobs_enqueue_many(members=[], user=user)
    with override_settings(JOBADMIN_BULK_ENQUEUE_MAX=3), pytest.raises(serializers.ValidationError, match="At most 3"):
        services.jobs_enqueue_many(members=[DEMO] * 4, user=user)
    assert nothing_written()


def test_the_wake_ups_of_a_bulk_are_bounded_by_the_queues_concurrency(user, django_capture_on_commit_callbacks):
    from django_q.brokers import get_broker

    broker = get_broker()
    before = broker.queue_size()
    with django_capture_on_commit_callbacks(execute=True):
        services.jobs_enqueue_many(members=[DEMO] * 200 + [{**DEMO, "queue": "high"}], user=user)

    default, high = Queue.objects.get(name="default"), Queue.objects.get(name="high")
    assert default.pending_wakeups == default.concurrency
    assert high.pending_wakeups == 1
    assert broker.queue_size() - before == default.concurrency + 1  # sent, not 201


def test_bulk_queued_jobs_are_claimed_and_run_like_any_other(user):
    services.jobs_enqueue_many(members=[DEMO, DEMO], user=user)

    claimed = services.job_claim(queue="default", worker="test:1")

    assert claimed is not None
    assert claimed.status == JobStatus.RUNNING
    assert claimed.resumable is True
    assert claimed.steps == list(get_job_type("demo").steps)


# --- the API ---------------------------------------------------------------------------------


def test_the_api_queues_a_bulk_and_answers_the_ids_in_order(user):
    response = as_user(user).post("/api/jobs/bulk-enqueue/", {"jobs": [DEMO, DEMO, DEMO]}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["count"] == 3
    created = list(JobEvent.objects.filter(kind=EventKind.CREATED).order_by("id").values_list("job_id", flat=True))
    assert body["ids"] == [str(pk) for pk in created]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"jobs": [DEMO, {**DEMO, "priority": "high"}]},
            {"jobs": {"1": {"priority": ["A valid integer is required."]}}},
        ),
        ({"jobs": [DEMO, {**DEMO, "extra": 1}]}, {"jobs": {"1": {"extra": ["Unknown field."]}}}),
        ({"jobs": [DEMO, {"type": "demo", "params": {"items": -1}}]}, "params"),
        ({"jobs": []}, "jobs"),
        ({"jobs": [DEMO], "colour": "red"}, {"colour": ["Unknown field."]}),
        ([DEMO], "non_field_errors"),
    ],
)
def test_the_api_refuses_bad_input_with_field_messages_and_queues_nothing(user, body, problem):
    response = as_user(user).post("/api/jobs/bulk-enqueue/", body, format="json")

    assert response.status_code == 400, response.content
    if isinstance(problem, dict):
        assert response.json() == problem
    else:
        assert problem in str(response.json())
    assert nothing_written()


def test_the_api_refuses_a_forbidden_member_with_a_403_that_names_it(user):
    response = as_user(user).post(
        "/api/jobs/bulk-enqueue/", {"jobs": [DEMO, {"type": "purge-history", "params": {}}]}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["detail"].startswith("Job 1: ")
    assert nothing_written()


def test_the_api_refuses_an_idempotency_key_on_a_bulk(user):
    response = as_user(user).post(
        "/api/jobs/bulk-enqueue/", {"jobs": [DEMO]}, format="json", headers={"Idempotency-Key": "k-1"}
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert nothing_written()


def test_the_api_refuses_an_anonymous_bulk():
    response = APIClient().post("/api/jobs/bulk-enqueue/", {"jobs": [DEMO]}, format="json")

    assert response.status_code == 401
    assert nothing_written()
