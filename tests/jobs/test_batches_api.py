"""/api/batches/ and the job list's ``batch`` filter (DESIGN.md "Batches", "JSON API")."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Batch, EventKind, Job, JobEvent, JobStatus

pytestmark = pytest.mark.django_db

DEMO: dict[str, Any] = {"type": "demo", "params": {"items": 3, "delay_ms": 0}}


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def body(n: int = 2, **extra: Any) -> dict[str, Any]:
    return {"name": "crawl", "jobs": [DEMO] * n, **extra}


def test_create_answers_with_the_batch_its_members_and_its_aggregate(user):
    response = as_user(user).post("/api/batches/", body(3, on_complete={"type": "demo"}), format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "running"
    assert data["total"] == 3
    assert data["counts"] == {"queued": 3, "running": 0, "paused": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert data["progress"] == 0
    assert data["eta"] is None
    assert data["user"] == user.pk
    assert set(data["members"]) == {str(pk) for pk in Job.objects.values_list("id", flat=True)}
    assert data["on_complete"]["type"] == "demo"
    assert data["on_complete_job"] is None


def test_a_bad_member_is_a_400_naming_its_index_and_nothing_is_queued(user):
    bad = {"name": "crawl", "jobs": [DEMO, {"type": "demo", "params": {"items": "x"}}, {"type": "nope"}, DEMO]}

    response = as_user(user).post("/api/batches/", bad, format="json")

    assert response.status_code == 400
    assert set(response.json()["jobs"]) == {"1", "2"}
    assert "params" in response.json()["jobs"]["1"]
    assert "type" in response.json()["jobs"]["2"]
    # A member's unknown field is refused by the body's shape, by its index too.
    shape = as_user(user).post("/api/batches/", {"name": "c", "jobs": [DEMO, {**DEMO, "x": 1}]}, format="json")
    assert shape.status_code == 400
    assert set(shape.json()["jobs"]) == {"1"}
    assert not Batch.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "sent",
    [
        {"name": "crawl", "jobs": []},
        {"jobs": [DEMO]},
        {"name": "crawl"},
        {"name": "crawl", "jobs": [DEMO], "colour": "red"},
        {"name": "crawl", "jobs": [DEMO], "on_complete": {"type": "nope"}},
    ],
)
def test_bad_bodies_are_a_400_with_field_messages(user, sent):
    response = as_user(user).post("/api/batches/", sent, format="json")

    assert response.status_code == 400
    assert response.json()
    assert not Batch.objects.exists()
    assert not Job.objects.exists()


def test_over_the_size_limit_is_a_400(user):
    with override_settings(JOBADMIN_BATCH_MAX=2):
        response = as_user(user).post("/api/batches/", body(3), format="json")
    assert response.status_code == 400
    assert "JOBADMIN_BATCH_MAX" in str(response.json()["jobs"])
    assert not Job.objects.exists()


def test_the_same_idempotency_key_returns_the_first_batch_and_another_request_is_a_422(user):
    client = as_user(user)
    first = client.post("/api/batches/", body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
    again = client.post("/api/batches/", body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
    other = client.post("/api/batches/", body(3), format="json", HTTP_IDEMPOTENCY_KEY="abc")

    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Batch.objects.count() == 1
    assert Job.objects.count() == 2


def test_owners_see_their_own_batches_others_get_a_404_and_viewers_see_all(user, other_user, staff_user):
    mine = services.batch_create(name="mine", members=[DEMO], user=user)
    services.batch_create(name="theirs", members=[DEMO], user=other_user)

    listed = as_user(user).get("/api/batches/").json()
    assert [row["name"] for row in listed["results"]] == ["mine"]
    assert as_user(other_user).get(f"/api/batches/{mine.pk}/").status_code == 404
    assert as_user(other_user).get("/api/batches/999999/").status_code == 404
    assert as_user(other_user).post(f"/api/batches/{mine.pk}/cancel/").status_code == 404
    assert len(as_user(staff_user).get("/api/batches/").json()["results"]) == 2
    assert as_user(staff_user).get(f"/api/batches/{mine.pk}/").status_code == 200


def test_a_viewer_without_change_job_is_refused_acting_on_anothers_batch(user, bare_staff):
    from tests.conftest import grant

    viewer = grant(bare_staff, "jobs.view_job")
    batch = services.batch_create(name="mine", members=[DEMO], user=user)

    response = as_user(viewer).post(f"/api/batches/{batch.pk}/cancel/")

    assert response.status_code == 403
    assert "change_job" in response.json()["detail"]
    assert Job.objects.get().status == JobStatus.QUEUED


def test_cancel_then_retry_are_one_action_each_and_a_needless_one_is_a_409(user):
    client = as_user(user)
    batch = services.batch_create(name="crawl", members=[DEMO, DEMO], user=user)

    cancelled = client.post(f"/api/batches/{batch.pk}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["counts"]["cancelled"] == 2
    assert client.post(f"/api/batches/{batch.pk}/cancel/").status_code == 409
    assert client.post(f"/api/batches/{batch.pk}/retry/").status_code == 409  # none failed
    assert JobEvent.objects.get(kind=EventKind.BATCH_CANCELLED).actor_id == user.pk
    assert client.post(f"/api/batches/{batch.pk}/cancel/", {"x": 1}, format="json").status_code == 400


def test_the_job_list_filters_by_batch(user):
    batch = services.batch_create(name="crawl", members=[DEMO, DEMO], user=user)
    services.job_enqueue(job_type="demo", params={"items": 1}, user=user)
    client = as_user(user)

    listed = client.get(f"/api/jobs/?batch={batch.pk}").json()["results"]

    assert len(listed) == 2
    assert {row["batch"] for row in listed} == {batch.pk}
    assert client.get("/api/jobs/?batch=x").status_code == 400
    assert client.get("/api/jobs/?batch=").status_code == 400
