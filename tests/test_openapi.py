"""The OpenAPI schema tells the truth about the jobs API.

schemathesis generates requests from ``/api/schema/`` (valid and invalid ones) for every
operation of the jobs, job types, queues and auth endpoints and checks each response:
no 5xx, and status code, content type, headers and body as the schema documents them.
The number of examples per operation is bounded so the run stays well under a minute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from jobs.models import JobResult, JobStatus
from tests.factories import JobFactory, UserFactory

OUR_PATHS = r"^/api/(jobs|job-types|queues|auth)/"
# Whether a schema-valid body is accepted here depends on server state the schema cannot
# express (the credentials; the registered types, each with its own params schema, and
# the queues), so a 400 for a well-formed body is correct: schemathesis' "positive data
# must be accepted" check is off for these two operations only. Every other check runs.
# Examples per operation: small by default so the run stays well under a minute.
EXAMPLES = int(os.environ.get("JOBADMIN_SCHEMATHESIS_EXAMPLES", "12"))
STATEFUL_ACCEPTANCE = {("POST", "/api/auth/token/"), ("POST", "/api/jobs/")}


def _load_schema() -> Any:
    """The schema exactly as ``/api/schema/`` serves it, bound to the WSGI app."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    as_json = json.loads(OpenApiJsonRenderer().render(generated))
    loaded = schemathesis.openapi.from_dict(as_json).include(path_regex=OUR_PATHS)
    loaded.app = get_wsgi_application()
    return loaded


schema = _load_schema()


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    # Like Django's test client: a request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def scene(db: Any) -> dict[str, Any]:
    """A superuser with a token, and one job in each status (one with a result)."""
    admin = UserFactory.create(is_staff=True, is_superuser=True)
    jobs = {status: JobFactory.create(user=admin, status=status) for status in JobStatus.values}
    done = jobs[JobStatus.COMPLETED]
    done.duration, done.finished_at = 1.5, timezone.now()
    done.save()
    JobResult.objects.create(job=done, data={"ok": True})
    return {"token": Token.objects.create(user=admin).key, "jobs": list(jobs.values())}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, scene: dict[str, Any]) -> None:
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])
    # Half the generated job ids are replaced by real ones, so detail and actions are
    # exercised on existing jobs of every status, not only as 404s.
    if case.path_parameters and "id" in case.path_parameters:
        seed = sum(map(ord, str(case.path_parameters["id"])))
        if seed % 2 == 0:
            case.path_parameters["id"] = str(scene["jobs"][seed % len(scene["jobs"])].pk)
    excluded = []
    if (case.method.upper(), case.path) in STATEFUL_ACCEPTANCE:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Token {scene['token']}"}, excluded_checks=excluded)


@pytest.mark.django_db
def test_schema_and_interactive_docs_are_served_and_list_every_jobs_operation(client: Any) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    expected = {
        "/api/auth/token/": {"post"},
        "/api/jobs/": {"get", "post"},
        "/api/jobs/{id}/": {"get"},
        "/api/jobs/{id}/result/": {"get"},
        "/api/jobs/{id}/events/": {"get"},
        "/api/jobs/{id}/cancel/": {"post"},
        "/api/jobs/{id}/retry/": {"post"},
        "/api/jobs/{id}/pause/": {"post"},
        "/api/jobs/{id}/resume/": {"post"},
        "/api/jobs/bulk/": {"post"},
        "/api/jobs/cleanup-stalled/": {"post"},
        "/api/job-types/": {"get"},
        "/api/job-types/{name}/": {"get"},
        "/api/queues/": {"get"},
        "/api/queues/{name}/": {"get"},
        "/api/queues/{name}/pause/": {"post"},
        "/api/queues/{name}/resume/": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert set(paths["/api/jobs/{id}/cancel/"]["post"]["responses"]) >= {"200", "401", "403", "404", "409", "429"}
    list_params = {p["name"] for p in paths["/api/jobs/"]["get"]["parameters"]}
    assert list_params >= {"status", "type", "queue", "user", "created_after", "created_before", "search"}
    assert list_params >= {"ordering", "page", "page_size", "id"}
    assert client.get("/api/docs/").status_code == 200
