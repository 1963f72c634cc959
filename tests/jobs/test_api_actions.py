"""The jobs API's actions, bulk, clean-up, job types, queues, auth and the permission matrix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import EventKind, Job, JobEvent, JobStatus, Queue
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])


def grant(user: Any, *codenames: str) -> Any:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permissions are cached per object


def as_user(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user=user)
    return client


# --- single-job actions: legal and illegal ------------------------------------------------------

LEGAL = [
    ("cancel", JobStatus.QUEUED, {}, JobStatus.CANCELLED, EventKind.CANCELLED),
    ("cancel", JobStatus.PAUSED, {}, JobStatus.CANCELLED, EventKind.CANCELLED),
    ("cancel", JobStatus.RUNNING, {}, JobStatus.RUNNING, EventKind.CANCEL_REQUESTED),
    ("retry", JobStatus.FAILED, {"error": "boom", "attempts": 1}, JobStatus.QUEUED, EventKind.RETRIED),
    ("retry", JobStatus.CANCELLED, {"attempts": 1}, JobStatus.QUEUED, EventKind.RETRIED),
    ("pause", JobStatus.RUNNING, {}, JobStatus.RUNNING, EventKind.PAUSE_REQUESTED),
    # A paused job was suspended: resume queues it again to continue from its checkpoint.
    ("resume", JobStatus.PAUSED, {}, JobStatus.QUEUED, EventKind.RESUMED),
    ("resume", JobStatus.RUNNING, {"pause_requested": True}, JobStatus.RUNNING, EventKind.RESUMED),
]


@pytest.mark.parametrize(("verb", "before", "extra", "after", "kind"), LEGAL)
def test_a_legal_action_applies_through_the_service_and_records_the_actor(user, verb, before, extra, after, kind):
    job = JobFactory.create(user=user, status=before, **extra)

    response = as_user(user).post(f"/api/jobs/{job.pk}/{verb}/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == after
    job.refresh_from_db()
    assert job.status == after
    event = JobEvent.objects.filter(job=job).latest("id")
    assert (event.kind, event.actor_id) == (kind, user.pk)


ILLEGAL = [
    ("cancel", JobStatus.COMPLETED, {}),
    ("cancel", JobStatus.FAILED, {}),
    ("cancel", JobStatus.RUNNING, {"cancel_requested": True}),
    ("retry", JobStatus.COMPLETED, {}),
    ("retry", JobStatus.RUNNING, {}),
    ("retry", JobStatus.QUEUED, {}),
    ("pause", JobStatus.QUEUED, {}),
    ("pause", JobStatus.PAUSED, {}),
    ("pause", JobStatus.RUNNING, {"pause_requested": True}),
    ("resume", JobStatus.COMPLETED, {}),
    ("resume", JobStatus.QUEUED, {}),
    ("resume", JobStatus.RUNNING, {}),
]


@pytest.mark.parametrize(("verb", "before", "extra"), ILLEGAL)
def test_an_illegal_action_is_a_409_with_the_current_status_and_changes_nothing(user, verb, before, extra):
    job = JobFactory.create(user=user, status=before, **extra)
    updated = job.updated_at

    response = as_user(user).post(f"/api/jobs/{job.pk}/{verb}/")

    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["action"], body["status"]) == ("illegal_transition", verb, before)
    assert body["detail"]
    job.refresh_from_db()
    assert (job.status, job.updated_at) == (before, updated)
    assert not JobEvent.objects.filter(job=job).exists()


def test_retry_of_a_job_whose_type_is_gone_is_a_409(user):
    job = JobFactory.create(user=user, status=JobStatus.FAILED, type="retired-type")
    response = as_user(user).post(f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["status"] == "failed"


def test_actions_only_accept_post(user):
    job = JobFactory.create(user=user)
    assert as_user(user).get(f"/api/jobs/{job.pk}/cancel/").status_code == 405


# --- the permission matrix ----------------------------------------------------------------------


@pytest.fixture
def owner(db: Any) -> Any:
    return UserFactory.create()


@pytest.fixture
def roles(owner: Any) -> dict[str, Any]:
    return {
        "anonymous": None,
        "owner": owner,
        "other": UserFactory.create(),
        "staff": UserFactory.create(is_staff=True),  # is_staff alone grants nothing
        "viewer": grant(UserFactory.create(is_staff=True), "view_job"),
        "staff_with_perm": grant(UserFactory.create(is_staff=True), "change_job"),
        "user_with_perm": grant(UserFactory.create(), "change_job"),
    }


# role → (status of GET detail, status of POST cancel)
MATRIX = {
    "anonymous": (401, 401),
    "owner": (200, 200),
    "other": (404, 404),
    "staff": (404, 404),
    "viewer": (200, 403),
    "staff_with_perm": (200, 200),
    "user_with_perm": (200, 200),
}


@pytest.mark.parametrize("role", list(MATRIX))
def test_permission_matrix_for_reading_and_acting_on_a_job(roles, owner, role):
    job = JobFactory.create(user=owner)
    client = as_user(roles[role])
    read, act = MATRIX[role]

    assert client.get(f"/api/jobs/{job.pk}/").status_code == read
    assert client.get(f"/api/jobs/{job.pk}/events/").status_code == read
    response = client.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == act
    job.refresh_from_db()
    assert job.status == (JobStatus.CANCELLED if act == 200 else JobStatus.QUEUED)


@pytest.mark.parametrize("role", list(MATRIX))
def test_permission_matrix_for_the_list(roles, owner, role):
    JobFactory.create(user=owner)
    response = as_user(roles[role]).get("/api/jobs/")
    if role == "anonymous":
        assert response.status_code == 401
        return
    expected = {"owner": 1, "other": 0, "staff": 0}.get(role, 1)
    assert response.json()["count"] == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 401),
        ("other", 403),
        ("staff", 403),
        ("viewer", 403),
        ("staff_with_perm", 200),
        ("user_with_perm", 200),
    ],
)
def test_cleanup_stalled_needs_the_change_permission(roles, role, expected):
    assert as_user(roles[role]).post("/api/jobs/cleanup-stalled/").status_code == expected


# --- bulk -----------------------------------------------------------------------------------------


def test_bulk_gives_an_outcome_per_id_and_applies_each_job_on_its_own(user, other_user):
    queued = JobFactory.create(user=user, status=JobStatus.QUEUED)
    finished = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    theirs = JobFactory.create(user=other_user, status=JobStatus.QUEUED)
    missing = "00000000-0000-0000-0000-000000000001"
    ids = [str(queued.pk), str(finished.pk), str(theirs.pk), missing, str(queued.pk)]

    response = as_user(user).post("/api/jobs/bulk/", {"action": "cancel", "ids": ids}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "cancel"
    outcomes = [(r["id"], r["outcome"], r["status"]) for r in body["results"]]
    assert outcomes == [
        (str(queued.pk), "ok", "cancelled"),
        (str(finished.pk), "conflict", "completed"),
        (str(theirs.pk), "not_found", None),
        (missing, "not_found", None),
    ]
    assert Job.objects.get(pk=theirs.pk).status == JobStatus.QUEUED


def test_bulk_marks_visible_but_foreign_jobs_forbidden_for_staff_without_the_permission(other_user):
    viewer = grant(UserFactory.create(is_staff=True), "view_job")
    theirs = JobFactory.create(user=other_user, status=JobStatus.FAILED)
    body = as_user(viewer).post("/api/jobs/bulk/", {"action": "retry", "ids": [str(theirs.pk)]}, format="json")
    assert body.json()["results"][0]["outcome"] == "forbidden"
    assert Job.objects.get(pk=theirs.pk).status == JobStatus.FAILED


@pytest.mark.parametrize("verb", ["retry", "pause", "resume"])
def test_bulk_runs_each_action(user, verb):
    before = {"retry": JobStatus.FAILED, "pause": JobStatus.RUNNING, "resume": JobStatus.PAUSED}[verb]
    job = JobFactory.create(user=user, status=before)
    body = as_user(user).post("/api/jobs/bulk/", {"action": verb, "ids": [str(job.pk)]}, format="json").json()
    assert body["results"][0]["outcome"] == "ok"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"action": "explode", "ids": ["00000000-0000-0000-0000-000000000001"]}, "action"),
        ({"action": "cancel", "ids": []}, "ids"),
        ({"action": "cancel", "ids": ["nope"]}, "ids"),
        ({"action": "cancel", "ids": [False]}, "ids"),
        ({"action": "cancel", "ids": [0]}, "ids"),
        ({"action": "cancel", "ids": ["00000000-0000-0000-0000-000000000001"] * 501}, "ids"),
        ({"action": "cancel"}, "ids"),
    ],
)
def test_bulk_rejects_bad_input_with_400(user, payload, field):
    response = as_user(user).post("/api/jobs/bulk/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


# --- clean up stalled -------------------------------------------------------------------------


def test_cleanup_stalled_fails_jobs_whose_heartbeat_stopped(superuser):
    old = timezone.now() - timedelta(hours=1)
    stalled = JobFactory.create(status=JobStatus.RUNNING, started_at=old, heartbeat_at=old, timeout=7200, attempts=1)
    alive = JobFactory.create(status=JobStatus.RUNNING, started_at=old, heartbeat_at=timezone.now(), attempts=1)

    body = as_user(superuser).post("/api/jobs/cleanup-stalled/").json()

    assert [(r["id"], r["status"]) for r in body["results"]] == [(str(stalled.pk), "failed")]
    assert "heartbeat" in body["results"][0]["reason"]
    assert Job.objects.get(pk=alive.pk).status == JobStatus.RUNNING


# --- job types ----------------------------------------------------------------------------------


def test_job_types_list_publishes_each_types_params_json_schema(user):
    rows = as_user(user).get("/api/job-types/").json()
    demo = next(r for r in rows if r["name"] == "demo")
    assert set(demo) >= {"name", "description", "queue", "steps", "params_schema", "timeout", "max_attempts"}
    assert demo["steps"] == ["Prepare", "Process", "Summarise"]
    assert demo["params_schema"]["type"] == "object"
    assert "items" in demo["params_schema"]["properties"]


def test_job_type_detail_and_unknown_type(user):
    client = as_user(user)
    assert client.get("/api/job-types/export-jobs/").json()["queue"] == "batch"
    assert client.get("/api/job-types/no-such-type/").status_code == 404
    assert as_user(None).get("/api/job-types/").status_code == 401


# --- queues ---------------------------------------------------------------------------------------


def test_queues_report_queued_running_capacity_utilisation_and_paused(staff_user, user):
    JobFactory.create_batch(3, status=JobStatus.QUEUED, queue="default")
    JobFactory.create(status=JobStatus.RUNNING, queue="default")
    JobFactory.create(status=JobStatus.PAUSED, queue="default")
    JobFactory.create(status=JobStatus.COMPLETED, queue="default")
    Queue.objects.update_or_create(name="batch", defaults={"concurrency": 3, "paused": True})

    assert as_user(user).get("/api/queues/").status_code == 403  # everyone's counts: jobs.view_job
    rows = {r["name"]: r for r in as_user(staff_user).get("/api/queues/").json()}

    assert set(rows) >= {"high", "default", "batch"}
    assert rows["default"] == {
        "name": "default",
        "queued": 3,
        "running": 1,  # the paused job was suspended: it holds no slot
        "capacity": 5,
        "utilisation": 0.2,
        "paused": False,
    }
    assert rows["batch"]["paused"] is True
    assert as_user(staff_user).get("/api/queues/high/").json()["capacity"] == 2
    assert as_user(staff_user).get("/api/queues/nowhere/").status_code == 404


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 401), ("owner", 403), ("staff", 403), ("staff_with_perm", 403), ("pauser", 200)],
)
def test_queue_pause_needs_its_own_permission(roles, role, expected):
    roles["pauser"] = grant(UserFactory.create(), "pause_queue")
    response = as_user(roles[role]).post("/api/queues/high/pause/")
    assert response.status_code == expected
    assert Queue.objects.filter(name="high", paused=True).exists() == (expected == 200)


def test_queue_pause_then_resume_and_the_illegal_repeats(user):
    pauser = grant(user, "pause_queue")
    client = as_user(pauser)

    assert client.post("/api/queues/default/pause/").json()["paused"] is True
    again = client.post("/api/queues/default/pause/")
    assert again.status_code == 409
    assert again.json()["status"] == "paused"
    assert client.post("/api/queues/default/resume/").json()["paused"] is False
    assert client.post("/api/queues/default/resume/").status_code == 409
    assert client.post("/api/queues/nowhere/pause/").status_code == 404
    kinds = list(JobEvent.objects.filter(job=None).values_list("kind", "actor_id"))
    assert kinds == [(EventKind.QUEUE_PAUSED, user.pk), (EventKind.QUEUE_RESUMED, user.pk)]


# --- auth -----------------------------------------------------------------------------------------


def test_token_endpoint_returns_a_token_that_authenticates(user):
    anon = APIClient()
    response = anon.post("/api/auth/token/", {"username": user.username, "password": "pw-secret-123"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]

    anon.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anon.get("/api/jobs/").status_code == 200


def test_token_endpoint_rejects_bad_credentials_with_field_errors(user):
    response = APIClient().post("/api/auth/token/", {"username": user.username, "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_token_endpoint_is_throttled_by_its_own_scope(user, settings):
    settings.JOBADMIN_API_THROTTLE_RATES = {**settings.JOBADMIN_API_THROTTLE_RATES, "token": "2/min"}
    client = APIClient()
    codes = [client.post("/api/auth/token/", {"username": "x", "password": "y"}).status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    assert "detail" in client.post("/api/auth/token/", {"username": "x", "password": "y"}).json()


def test_session_auth_enforces_csrf_on_actions(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    job = JobFactory.create(user=user)

    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    refused = client.post(f"/api/jobs/{job.pk}/cancel/")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    client.get("/admin/login/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"/api/jobs/{job.pk}/cancel/", HTTP_X_CSRFTOKEN=token).status_code == 200
