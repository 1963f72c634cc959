"""The OpenAPI schema tells the truth about the API, and a client generated from it is typed.

schemathesis generates requests from ``/api/schema/`` (valid and invalid ones) for every
operation of the jobs, job types, queues, auth and monitoring endpoints and checks each
response: no 5xx, and status code, content type, headers and body as the schema documents
them. The number of examples per operation is bounded so the run stays well under a minute.

Besides: every operation has a typed success body and lists the error statuses it can
answer with their bodies; the document validates; and openapi-python-client generates
from it a client whose calls return typed objects, typed errors included.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openapi_spec_validator
import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, settings
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from schemathesis.specs.openapi.checks import positive_data_acceptance

from jobs.api.permissions import SignedIn
from jobs.api.settings import generate_schema
from jobs.models import JobResult, JobStatus
from monitoring.models import Alert, AlertRule, AlertStatus
from tests.conftest import OPERATOR_PERMISSIONS, grant
from tests.factories import JobFactory, UserFactory

OUR_PATHS = r"^/api/(jobs|job-types|queues|auth|stats|analytics|metrics|health|alerts|stream|events)/"
# Whether a schema-valid body is accepted here depends on server state the schema cannot
# express (the credentials; the registered types, each with its own params schema, and
# the queues), so a 400 for a well-formed body is correct: schemathesis' "positive data
# must be accepted" check is off for these operations only. Every other check runs.
# Examples per operation: small by default so the run stays well under a minute.
EXAMPLES = int(os.environ.get("JOBADMIN_SCHEMATHESIS_EXAMPLES", "12"))
STATEFUL_ACCEPTANCE = {("POST", "/api/auth/token/"), ("POST", "/api/jobs/"), ("POST", "/api/jobs/bulk-enqueue/")}
# Likewise, a window is refused for constraints between parameters that a schema cannot
# state: ``from`` after ``to``, or more than 2,000 points of ``interval`` over the window.
CROSS_PARAMETER = {
    ("GET", f"/api/{path}/")
    for path in ("stats", "metrics", "analytics/types", "analytics/users", "analytics/errors", "analytics/trends")
} | {("GET", "/api/analytics/peak-hours/")}


def _served_schema() -> dict[str, Any]:
    """The schema exactly as ``/api/schema/`` serves it."""
    generated = generate_schema()
    return json.loads(OpenApiJsonRenderer().render(generated))  # type: ignore[no-any-return]


def _load_schema() -> Any:
    """The served schema, bound to the WSGI app."""
    loaded = schemathesis.openapi.from_dict(_served_schema()).include(path_regex=OUR_PATHS)
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
    """A superuser with a token, one job in each status (one with a result) and an alert in each."""
    admin = UserFactory.create(is_staff=True, is_superuser=True)
    jobs = {status: JobFactory.create(user=admin, status=status) for status in JobStatus.values}
    done = jobs[JobStatus.COMPLETED]
    done.duration, done.finished_at = 1.5, timezone.now()
    done.save()
    JobResult.objects.create(job=done, data={"ok": True})
    rule = AlertRule.objects.create(name="schema-test", metric="failures", threshold=2)
    alerts = [
        Alert.objects.create(rule=rule, subject=status, severity="warning", status=status, message="m", value=3)
        for status in AlertStatus.values
    ]
    return {"token": Token.objects.create(user=admin).key, "jobs": list(jobs.values()), "alerts": alerts}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, scene: dict[str, Any]) -> None:
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])
    # Half the generated job and alert ids are replaced by real ones, so detail and actions
    # are exercised on existing objects of every status, not only as 404s.
    if case.path_parameters and "id" in case.path_parameters:
        seed = sum(map(ord, str(case.path_parameters["id"])))
        real = scene["alerts"] if case.path.startswith("/api/alerts/") else scene["jobs"]
        # An alert id is an integer: a generated non-integer is a negative case, kept as it is.
        typed = not case.path.startswith("/api/alerts/") or str(case.path_parameters["id"]).isdigit()
        if seed % 2 == 0 and typed:
            case.path_parameters["id"] = str(real[seed % len(real)].pk)
    excluded = []
    if (case.method.upper(), case.path) in STATEFUL_ACCEPTANCE | CROSS_PARAMETER:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Token {scene['token']}"}, excluded_checks=excluded)


@pytest.mark.django_db
def test_schema_and_interactive_docs_are_served_and_list_every_jobs_operation(client: Any) -> None:
    assert client.get("/api/schema/?format=json").status_code == 401  # a login first, like the whole API
    client.force_login(UserFactory.create())
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
        "/api/stream/": {"get"},
        "/api/jobs/{id}/stream/": {"get"},
        "/api/events/": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert set(paths["/api/jobs/{id}/cancel/"]["post"]["responses"]) >= {"200", "401", "403", "404", "409", "429"}
    list_params = {p["name"] for p in paths["/api/jobs/"]["get"]["parameters"]}
    assert list_params >= {"status", "type", "queue", "user", "created_after", "created_before", "search"}
    assert list_params >= {"ordering", "page", "page_size", "id"}
    for stream in ("/api/stream/", "/api/jobs/{id}/stream/"):
        assert set(paths[stream]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}
    assert set(paths["/api/events/"]["get"]["responses"]["200"]["content"]) == {"application/json"}
    assert client.get("/api/docs/").status_code == 200


def _endpoints() -> list[tuple[str, str, Any]]:
    """Every documented operation with the view that answers it: (path, method, view)."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    found: list[Any] = list(generator.endpoints or [])
    endpoints = []
    for path, _regex, method, callback in found:
        view = generator.create_view(callback, method)
        endpoints.append((generator.coerce_path(path, method, view), method.lower(), view))
    return endpoints


def _error_statuses_it_can_answer(path: str, method: str, view: Any, operation: dict[str, Any]) -> set[int]:
    """What the view's own classes and the operation's inputs let it answer, whatever the view does.

    401 when it authenticates and does not allow anyone; 403 when a permission asks more than a
    login, or on an unsafe method under session authentication (CSRF); 404 for a path with an
    id; 400 when it reads query parameters or a body; 429 when it is throttled. (409 depends on
    the action, and is checked where transitions are: ``test_..._list_every_jobs_operation``.)
    """
    permissions = view.get_permissions()
    authenticators = view.get_authenticators()
    anyone = all(isinstance(p, AllowAny) for p in permissions)
    codes = set()
    if authenticators and not anyone:
        codes.add(401)
    # ``SignedIn`` is the policy's login rule, as IsAuthenticated: no 403 of its own.
    stricter = any(type(p) not in (AllowAny, IsAuthenticated, SignedIn) for p in permissions)
    csrf = method not in ("get", "head", "options") and any(
        isinstance(a, SessionAuthentication) for a in authenticators
    )
    if stricter or csrf:
        codes.add(403)
    if "{" in path:
        codes.add(404)
    if any(p["in"] == "query" for p in operation.get("parameters", [])) or "requestBody" in operation:
        codes.add(400)
    if view.get_throttles():
        codes.add(429)
    return codes


def _ref(schema: dict[str, Any]) -> str | None:
    """The component a body is, directly or as the items of a list."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return str(schema["items"]["$ref"]).rsplit("/", 1)[-1]
    return None


ERROR_BODIES = {400: {"ValidationError"}, 409: {"TransitionError"}, 413: {"CodedError"}, 422: {"CodedError"}}


def test_every_operation_has_a_typed_body_and_lists_the_errors_it_can_answer() -> None:
    document = _served_schema()
    components = document["components"]["schemas"]
    problems = []
    endpoints = _endpoints()
    assert len(endpoints) >= 29
    undocumented = {path for path, _method, _view in endpoints if path not in document["paths"]}
    assert undocumented == set()  # the document itself and its viewer are no operations (schema = None)
    for path, method, view in endpoints:
        if path in undocumented:
            continue
        operation = document["paths"][path][method]
        responses = {int(code): body for code, body in operation["responses"].items()}
        where = f"{method.upper()} {path}"
        success = [code for code in responses if 200 <= code < 300]
        if not success:
            problems.append(f"{where}: no success response")
        for code, response in responses.items():
            if code == 204:  # No Content: a delete answers with no body, and says so
                if response.get("content"):
                    problems.append(f"{where}: 204 has a body")
                continue
            if "text/event-stream" in response.get("content", {}):  # a stream's body (live.sse)
                continue
            body = response.get("content", {}).get("application/json", {}).get("schema", {})
            name = _ref(body)
            if name is None or not components[name].get("properties", components[name].get("additionalProperties")):
                problems.append(f"{where}: {code} has no typed JSON body ({body})")
            elif code >= 400 and code != 503 and name not in ERROR_BODIES.get(code, {"Error"}):
                problems.append(f"{where}: {code} answers {name}, not the error body")
        missing = _error_statuses_it_can_answer(path, method, view, operation) - set(responses)
        if missing:
            problems.append(f"{where}: does not list {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_error_bodies_are_the_ones_the_api_sends() -> None:
    components = _served_schema()["components"]["schemas"]
    assert components["Error"]["required"] == ["detail"]
    assert set(components["TransitionError"]["required"]) == {"detail", "code", "action", "status"}
    assert components["ValidationError"]["additionalProperties"]


def test_the_schema_is_a_valid_openapi_document() -> None:
    document = _served_schema()
    openapi_spec_validator.validate(document)
    validate_schema(document)  # drf-spectacular's own check against the OpenAPI 3 JSON Schema


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_json_404(client: Any) -> None:
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert "text/html" in client.get("/no-such-page/")["Content-Type"]


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """openapi-python-client's client of the served document, generated into a temporary folder."""
    folder = tmp_path_factory.mktemp("client")
    (folder / "schema.json").write_text(json.dumps(_served_schema()))
    (folder / "config.yaml").write_text("post_hooks: []\n")  # no formatter run on the output
    command = [str(Path(sys.executable).with_name("openapi-python-client")), "generate"]
    command += ["--path", str(folder / "schema.json"), "--meta", "none", "--config", str(folder / "config.yaml")]
    command += ["--output-path", str(folder / "jobadmin_client")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("jobadmin_client")
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == "jobadmin_client"]:
            del sys.modules[name]


def test_the_generated_client_has_a_model_for_every_monitoring_body_and_error(generated_client: Any) -> None:
    models = importlib.import_module("jobadmin_client.models")
    expected = {
        "Stats",
        "AnalyticsTypes",
        "AnalyticsUsers",
        "AnalyticsErrors",
        "AnalyticsTrends",
        "AnalyticsPeakHours",
        "MetricsSeries",
        "Health",
        "Alert",
        "PaginatedAlertList",
        "Error",
        "ValidationError",
        "TransitionError",
    }
    assert expected <= set(dir(models))


@pytest.mark.django_db
def test_the_generated_client_gets_typed_objects_and_typed_errors(generated_client: Any) -> None:
    """Through the real WSGI application: every monitoring call parses into its model, errors too.

    ``raise_on_unexpected_status``: an answer the document does not list raises instead of parsing.
    """
    api = importlib.import_module("jobadmin_client.api")
    models = importlib.import_module("jobadmin_client.models")
    transport = httpx.WSGITransport(app=get_wsgi_application())

    def client(user: Any | None) -> Any:
        options = {"base_url": "http://localhost", "raise_on_unexpected_status": True}
        options["httpx_args"] = {"transport": transport}
        if user is None:
            return generated_client.Client(**options)
        token = Token.objects.create(user=user).key
        return generated_client.AuthenticatedClient(token=token, prefix="Token", **options)

    staff = client(grant(UserFactory.create(is_staff=True), *OPERATOR_PERMISSIONS))
    plain = client(UserFactory.create())
    anonymous = client(None)
    rule = AlertRule.objects.create(name="client-test", metric="failures", threshold=2)
    alert = Alert.objects.create(rule=rule, severity="warning", message="m", value=3)

    def call(module: str, who: Any, **kwargs: Any) -> tuple[int, Any]:
        group, name = module.split(".")
        response = importlib.import_module(f"{api.__name__}.{group}.{name}").sync_detailed(client=who, **kwargs)
        return response.status_code, response.parsed

    bodies = {
        "stats.stats_retrieve": models.Stats,
        "analytics.analytics_types_retrieve": models.AnalyticsTypes,
        "analytics.analytics_users_retrieve": models.AnalyticsUsers,
        "analytics.analytics_errors_retrieve": models.AnalyticsErrors,
        "analytics.analytics_trends_retrieve": models.AnalyticsTrends,
        "analytics.analytics_peak_hours_retrieve": models.AnalyticsPeakHours,
        "metrics.metrics_retrieve": models.MetricsSeries,
        "alerts.alerts_list": models.PaginatedAlertList,
    }
    JobFactory.create(status=JobStatus.FAILED, error="boom")
    for module, model in bodies.items():
        status, parsed = call(module, staff)
        assert (status, type(parsed)) == (200, model), module
        status, parsed = call(module, plain)
        assert (status, type(parsed)) == (403, models.Error), module
        assert parsed.detail
        status, parsed = call(module, anonymous)
        assert (status, type(parsed)) == (401, models.Error), module
    status, parsed = call("stats.stats_retrieve", staff, from_=timezone.now(), to=timezone.now() - timedelta(hours=1))
    assert (status, type(parsed)) == (400, models.ValidationError)
    assert parsed.additional_properties["from"]
    status, parsed = call("health.health_retrieve", anonymous)
    assert status in (200, 503)
    assert isinstance(parsed, models.Health)
    assert (type(call("alerts.alerts_acknowledge_create", staff, id=alert.pk)[1])) is models.Alert
    status, parsed = call("alerts.alerts_acknowledge_create", staff, id=alert.pk)
    assert (status, type(parsed)) == (409, models.TransitionError)
    assert parsed.status == "acknowledged"
    status, parsed = call("alerts.alerts_resolve_create", staff, id=alert.pk + 1000)
    assert (status, type(parsed)) == (404, models.Error)
    status, parsed = call("jobs.jobs_retrieve", plain, id=str(uuid.uuid4()))
    assert (status, type(parsed)) == (404, models.Error)
