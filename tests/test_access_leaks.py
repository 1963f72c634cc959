"""Each leak of issue 12, as a user would find it: one test per way one user could harm or read another.

Written before the fix and seen failing on the code of that time; ``tests/test_access_matrix.py``
holds the whole table of roles and ways in.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs import services
from jobs.models import Job, JobEvent, JobResult, JobStatus
from jobs.registry import get_job_type
from jobs.tasks import run_next
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def grant(user: Any, *perms: str) -> Any:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return type(user).objects.get(pk=user.pk)  # a fresh object: the permission cache is per instance


# --- purge-history ------------------------------------------------------------------------------
def test_an_ordinary_user_may_not_enqueue_purge_history_through_the_api(api_client: Any, user: Any) -> None:
    JobFactory.create(status=JobStatus.COMPLETED)
    api_client.force_authenticate(user)
    response = api_client.post("/api/jobs/", {"type": "purge-history", "params": {"days": 0}}, format="json")
    assert response.status_code == 403
    assert "jobs.purge_history" in response.json()["detail"]
    assert not Job.objects.filter(type="purge-history").exists()


def test_the_admin_enqueue_form_refuses_purge_history_to_staff_without_the_permission(client: Any) -> None:
    staff = grant(UserFactory(is_staff=True), "jobs.view_job", "jobs.change_job")
    client.force_login(staff)
    response = client.post(reverse("admin:jobs_job_enqueue_type", args=["purge-history"]), {"_queue": "batch"})
    assert response.status_code == 403
    assert "jobs.purge_history" in response.content.decode()
    assert not Job.objects.filter(type="purge-history").exists()
    listing = client.get(reverse("admin:jobs_job_enqueue")).content.decode()
    assert "purge-history" not in listing  # the form offers only what the user may run


def test_a_holder_of_purge_history_may_enqueue_it(api_client: Any) -> None:
    keeper = grant(UserFactory(), "jobs.purge_history")
    api_client.force_authenticate(keeper)
    response = api_client.post("/api/jobs/", {"type": "purge-history", "params": {"days": 0}}, format="json")
    assert response.status_code == 201


def test_job_types_say_whether_the_caller_may_run_each(api_client: Any, user: Any) -> None:
    api_client.force_authenticate(user)
    rows = {row["name"]: row for row in api_client.get("/api/job-types/").json()}
    assert rows["demo"]["may_run"] is True
    assert rows["purge-history"]["may_run"] is False


# --- export-jobs --------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # the worker's heartbeat thread reads over its own connection
def test_export_jobs_exports_only_the_jobs_its_user_may_see(user: Any, other_user: Any) -> None:
    mine = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    theirs = JobFactory.create(user=other_user, status=JobStatus.COMPLETED)
    export = services.job_enqueue(job_type="export-jobs", params={}, user=user, actor=user)
    assert run_next(export.queue) == str(export.pk)
    result = JobResult.objects.get(job=export)
    rows = list(csv.DictReader(io.StringIO(result.file.open("rb").read().decode())))
    ids = {row["id"] for row in rows}
    assert str(mine.pk) in ids
    assert str(theirs.pk) not in ids


# --- staff pages -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("page", "permission"),
    [("admin:jobadmin-monitor", "jobs.view_job"), ("admin:jobadmin-analytics", "jobs.view_job")],
)
def test_staff_without_permissions_get_a_403_naming_the_missing_permission(
    client: Any, page: str, permission: str
) -> None:
    JobFactory.create(status=JobStatus.FAILED, error="secret failure", traceback="/srv/app/secret.py line 1")
    client.force_login(UserFactory(is_staff=True))
    response = client.get(reverse(page))
    assert response.status_code == 403
    body = response.content.decode()
    assert permission in body
    assert "secret failure" not in body


def test_monitor_state_needs_view_job_too(client: Any) -> None:
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:jobadmin-monitor-state")).status_code == 403


# --- schema and docs, tracebacks -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_login(client: Any, path: str) -> None:
    assert client.get(path).status_code in (401, 403)


def test_owners_see_the_error_but_not_the_traceback_or_the_worker(api_client: Any, user: Any) -> None:
    job = JobFactory.create(
        user=user, status=JobStatus.FAILED, error="boom", traceback="File /srv/app/x.py", worker="host-a:123"
    )
    api_client.force_authenticate(user)
    body = api_client.get(f"/api/jobs/{job.pk}/").json()
    assert body["error"] == "boom"
    assert not body["traceback"]
    assert not body["worker"]
    listed = api_client.get("/api/jobs/").json()["results"][0]
    assert not listed["worker"]


def test_an_owner_reads_the_events_without_the_worker(api_client: Any, user: Any) -> None:
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    Job.objects.filter(pk=job.pk).update(worker="host-a:123")
    job.refresh_from_db()
    from jobs.events import record_job_event

    record_job_event(job=job, kind="started")
    api_client.force_authenticate(user)
    rows = api_client.get(f"/api/jobs/{job.pk}/events/").json()["results"]
    assert rows[-1]["payload"]["job"]["worker"] is None
    api_client.force_authenticate(grant(UserFactory(is_staff=True), "jobs.view_job"))
    rows = api_client.get(f"/api/jobs/{job.pk}/events/").json()["results"]
    assert rows[-1]["payload"]["job"]["worker"] == "host-a:123"


def test_viewers_of_every_job_see_traceback_and_worker(api_client: Any, user: Any) -> None:
    job = JobFactory.create(
        user=user, status=JobStatus.FAILED, error="boom", traceback="File /srv/app/x.py", worker="host-a:123"
    )
    api_client.force_authenticate(grant(UserFactory(is_staff=True), "jobs.view_job"))
    body = api_client.get(f"/api/jobs/{job.pk}/").json()
    assert body["traceback"] == "File /srv/app/x.py"
    assert body["worker"] == "host-a:123"


# --- /metrics behind a proxy -------------------------------------------------------------------
def test_metrics_behind_a_trusted_proxy_judges_the_forwarded_client(client: Any, settings: Any) -> None:
    settings.JOBADMIN_TRUSTED_PROXIES = ["127.0.0.1"]
    settings.PROMETHEUS_TOKEN = ""
    settings.PROMETHEUS_ALLOWED_IPS = ["127.0.0.1", "::1"]
    outside = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert outside.status_code == 403
    inside = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert inside.status_code == 200


def test_metrics_ignores_forwarded_headers_from_an_untrusted_peer(client: Any, settings: Any) -> None:
    settings.JOBADMIN_TRUSTED_PROXIES = []
    settings.PROMETHEUS_TOKEN = ""
    settings.PROMETHEUS_ALLOWED_IPS = ["127.0.0.1"]
    spoofed = client.get("/metrics", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.status_code == 403


def test_metrics_with_a_token_set_requires_it_unless_addresses_are_named(client: Any, settings: Any) -> None:
    from jobs import policy

    settings.PROMETHEUS_TOKEN = "s3cret"
    settings.PROMETHEUS_ALLOWED_IPS = []  # what the settings give when the variable is unset and a token is set
    assert policy.metrics_allowed_addresses() == []
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


# --- CORS ----------------------------------------------------------------------------------------
def test_a_preflight_from_an_allowed_origin_gets_cors_headers(client: Any, settings: Any) -> None:
    settings.JOBADMIN_CORS_ORIGINS = ["https://app.example"]
    response = client.options(
        "/api/jobs/",
        HTTP_ORIGIN="https://app.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()


def test_a_preflight_from_another_origin_gets_no_cors_headers(client: Any, settings: Any) -> None:
    settings.JOBADMIN_CORS_ORIGINS = ["https://app.example"]
    response = client.options(
        "/api/jobs/", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in response


# --- manage_others_jobs, kept working as the contract's pair ----------------------------------------
def test_purge_history_type_declares_its_permission() -> None:
    assert get_job_type("purge-history").permission == "jobs.purge_history"


def test_events_of_a_refused_enqueue_are_not_written(api_client: Any, user: Any) -> None:
    api_client.force_authenticate(user)
    before = JobEvent.objects.count()
    api_client.post("/api/jobs/", {"type": "purge-history", "params": {}}, format="json")
    assert JobEvent.objects.count() == before


def test_cors_headers_are_only_for_the_api(client: Any, settings: Any) -> None:
    settings.JOBADMIN_CORS_ORIGINS = ["https://app.example"]
    api = client.get("/api/health/", HTTP_ORIGIN="https://app.example")
    assert api["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Credentials" not in api  # cross-origin callers use a token
    page = client.get("/admin/login/", HTTP_ORIGIN="https://app.example")
    assert "Access-Control-Allow-Origin" not in page
