"""The access matrix: every way in, for every role, against one table (DESIGN.md, "Access policy").

The test walks the URLconf (every pattern under ``/api/``, the staff pages that ``console``
adds, the job admin's pages, ``/metrics``), every websocket message a client may send and
every channel kind, and every registered job type. Each must have a row below: an
endpoint, message, channel or job type without one fails ``test_every_*_has_a_row``, so a
new way in cannot ship without a rule.

Roles (columns, in this order): anonymous; ``user`` (owns the target job); ``other`` (another
user); ``staff`` (``is_staff``, no permission); ``viewer`` (staff with ``jobs.view_job``);
``changer`` (staff with ``jobs.change_job``); ``super`` (superuser). A cell is the HTTP status
(``LOGIN``: the admin's redirect to its login page), or for the websocket the reply's type
or error code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from jobs import policy
from jobs.models import Batch, Job, JobResult, JobStatus
from jobs.registry import all_job_types
from live import messages
from live.consumers import JobsConsumer
from monitoring.builtin_rules import ensure_builtin_rules
from monitoring.models import Alert, AlertRule
from tests.conftest import grant
from tests.factories import JobFactory, UserFactory
from tests.live.test_consumers import run

ROLES = ("anonymous", "user", "other", "staff", "viewer", "changer", "super")
LOGIN = "login"


def row(*cells: Any) -> dict[str, Any]:
    assert len(cells) == len(ROLES)
    return dict(zip(ROLES, cells, strict=True))


# The usual shapes of a row.
SIGNED_IN = row(401, 200, 200, 200, 200, 200, 200)
OWN_JOB = row(401, 200, 404, 404, 200, 200, 200)  # a job of ``user``: hidden (404) from who may not see it
ACT_ON_OWN_JOB = row(401, 200, 404, 404, 403, 200, 200)
SYSTEM = row(401, 403, 403, 403, 200, 200, 200)  # everyone's jobs, statistics, analytics, metrics
CHANGE_JOBS = row(401, 403, 403, 403, 403, 200, 200)
PAUSE_QUEUE = row(401, 403, 403, 403, 403, 403, 200)
ALERTS = row(401, 403, 403, 403, 403, 403, 200)  # monitoring.view_alert / change_alert
STAFF_PAGE = row(LOGIN, LOGIN, LOGIN, 403, 200, 200, 200)
ADMIN_SWEEP = row(LOGIN, LOGIN, LOGIN, 403, 403, 302, 302)
SUPERUSER_PAGE = row(LOGIN, LOGIN, LOGIN, 403, 403, 403, 302)  # jobs.pause_queue, jobs.purge_history
HIGH = {"name": "high"}


@dataclass(frozen=True)
class Way:
    """One way in: a URL name, a method, what it is called with, and the row it must answer."""

    name: str
    method: str
    expect: dict[str, Any]
    kwargs: Callable[[Scene], dict[str, Any]] = lambda scene: {}
    data: Callable[[Scene], dict[str, Any]] = lambda scene: {}
    job_status: str = JobStatus.QUEUED
    check: Callable[[Any, str], None] | None = None
    admin: bool = False  # session login (the admin and staff pages) instead of the API client
    setup: Callable[[Scene], Any] = lambda scene: None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scene:
    users: dict[str, Any]
    job: Job
    alert: Alert
    batch: Batch  # ``user``'s, with ``job`` its one member


def _job(scene: Scene) -> dict[str, Any]:
    return {"pk": scene.job.pk}


def _batch(scene: Scene) -> dict[str, Any]:
    return {"pk": scene.batch.pk}


def _rule(scene: Scene) -> dict[str, Any]:
    return {"pk": scene.alert.rule_id}


def _check_health(response: Any, role: str) -> None:
    assert ("checks" in response.json()) == (role in ("viewer", "changer", "super")), role


def _check_job_types(response: Any, role: str) -> None:
    if role == "anonymous":
        return
    may_run = {r["name"]: r["may_run"] for r in response.json()}
    assert may_run["purge-history"] is (role == "super"), role
    assert may_run["management-command"] is (role == "super"), role
    assert may_run["demo"] is True


def _check_list(response: Any, role: str) -> None:
    if role != "anonymous":
        expected = {"other": 0, "staff": 0, "user": 1}.get(role, Job.objects.count())
        assert response.json()["count"] == expected, role


def _check_bulk(response: Any, role: str) -> None:
    if role != "anonymous":
        outcome = response.json()["results"][0]["outcome"]
        expected = {"other": "not_found", "staff": "not_found", "viewer": "forbidden"}.get(role, "ok")
        assert outcome == expected, role


def _key_used_by_user(scene: Scene) -> None:
    from jobs import services

    services.job_enqueue_once(key="matrix-key", user=scene.users["user"], job_type="demo", params={})


def _check_replayed_for_the_keys_owner_only(response: Any, role: str) -> None:
    # An Idempotency-Key is its user's own: the same text from anyone else queues their own job.
    if role != "anonymous":
        assert (response.get("Idempotent-Replayed") == "true") == (role == "user"), role


def _schedule(scene: Scene) -> dict[str, Any]:
    """A schedule of the system's, made for the row (a transactional test's flush empties the table)."""
    from jobs.models import Schedule

    schedule, _ = Schedule.objects.get_or_create(
        name="matrix", defaults={"type": "demo", "params": {}, "interval_minutes": 60, "enabled": True}
    )
    return {"pk": schedule.pk}


SCHEDULE_BODY = {"type": "demo", "params": {}, "cron": "0 3 * * *"}
CHANGE_SCHEDULES = row(401, 403, 403, 403, 403, 403, 200)  # jobs.change_schedule


def _pause_high(scene: Scene) -> None:
    from jobs.models import Queue

    Queue.objects.filter(name="high").update(paused=True)


WAYS: list[Way] = [
    # --- /api/: jobs ---------------------------------------------------------------------------
    Way(
        "api-token",
        "post",
        row(200, 200, 200, 200, 200, 200, 200),
        data=lambda s: {"username": s.users["user"].username, "password": "pw-secret-123"},
    ),
    Way("job-list", "get", SIGNED_IN, check=_check_list),
    Way("job-list", "post", row(401, 201, 201, 201, 201, 201, 201), data=lambda s: {"type": "demo", "params": {}}),
    Way(
        "job-list",
        "post",
        row(401, 201, 201, 201, 201, 201, 201),
        data=lambda s: {"type": "demo", "params": {}},
        extra={"HTTP_IDEMPOTENCY_KEY": "matrix-key"},
        setup=_key_used_by_user,
        check=_check_replayed_for_the_keys_owner_only,
    ),
    Way("job-detail", "get", OWN_JOB, kwargs=_job),
    Way("job-result", "get", OWN_JOB, kwargs=_job),
    Way("job-events", "get", OWN_JOB, kwargs=_job),
    Way("job-cancel", "post", ACT_ON_OWN_JOB, kwargs=_job),
    # --- /api/: SSE and long-poll (under the test client, which is WSGI, they answer at once) -------
    Way("api-stream", "get", SIGNED_IN),  # the caller's own user channel
    Way("api-stream", "get", SYSTEM, data=lambda s: {"channels": "all"}),
    Way("api-stream", "get", row(401, 200, 403, 403, 200, 200, 200), data=lambda s: {"channels": f"job:{s.job.pk}"}),
    Way("api-job-stream", "get", row(401, 200, 403, 403, 200, 200, 200), kwargs=_job),
    Way("api-events", "get", SIGNED_IN),
    Way("api-events", "get", SYSTEM, data=lambda s: {"channels": "alerts", "after": 0}),
    Way("api-events", "get", row(401, 200, 403, 403, 200, 200, 200), data=lambda s: {"channels": f"job:{s.job.pk}"}),
    Way("job-retry", "post", ACT_ON_OWN_JOB, kwargs=_job, job_status=JobStatus.FAILED),
    Way("job-pause", "post", ACT_ON_OWN_JOB, kwargs=_job, job_status=JobStatus.RUNNING),
    Way("job-resume", "post", ACT_ON_OWN_JOB, kwargs=_job, job_status=JobStatus.PAUSED),
    Way(
        "job-bulk-enqueue",
        "post",
        row(401, 201, 201, 201, 201, 201, 201),
        data=lambda s: {"jobs": [{"type": "demo", "params": {}}, {"type": "demo", "params": {}}]},
    ),
    Way("job-bulk", "post", SIGNED_IN, data=lambda s: {"action": "cancel", "ids": [str(s.job.pk)]}, check=_check_bulk),
    Way("job-cleanup-stalled", "post", CHANGE_JOBS),
    Way("job-type-list", "get", SIGNED_IN, check=_check_job_types),
    Way("job-type-detail", "get", SIGNED_IN, kwargs=lambda s: {"name": "demo"}),
    Way("queue-list", "get", SYSTEM),
    Way("queue-detail", "get", SYSTEM, kwargs=lambda s: {"name": "high"}),
    Way("queue-pause", "post", PAUSE_QUEUE, kwargs=lambda s: {"name": "high"}),
    Way("queue-resume", "post", PAUSE_QUEUE, kwargs=lambda s: {"name": "high"}, setup=_pause_high),
    # --- /api/batches/: a batch is its owner's, like a job
    Way("batch-list", "get", SIGNED_IN),
    Way(
        "batch-list",
        "post",
        row(401, 201, 201, 201, 201, 201, 201),
        data=lambda s: {"name": "b", "jobs": [{"type": "demo", "params": {}}]},
    ),
    Way("batch-detail", "get", OWN_JOB, kwargs=_batch),
    Way("batch-cancel", "post", ACT_ON_OWN_JOB, kwargs=_batch),
    Way("batch-retry", "post", ACT_ON_OWN_JOB, kwargs=_batch, job_status=JobStatus.FAILED),
    # --- /api/schedules/: seeing them is a statistic; changing them needs jobs.change_schedule
    Way("schedule-list", "get", SYSTEM),
    Way("schedule-list", "post", row(401, 403, 403, 403, 403, 403, 201), data=lambda s: SCHEDULE_BODY),
    Way("schedule-detail", "get", SYSTEM, kwargs=_schedule),
    Way("schedule-detail", "patch", CHANGE_SCHEDULES, kwargs=_schedule, data=lambda s: {"interval_minutes": 30}),
    Way("schedule-detail", "delete", row(401, 403, 403, 403, 403, 403, 204), kwargs=_schedule),
    Way("schedule-pause", "post", CHANGE_SCHEDULES, kwargs=_schedule),
    Way("schedule-resume", "post", CHANGE_SCHEDULES, kwargs=_schedule),
    Way("schedule-run", "post", row(401, 403, 403, 403, 403, 403, 201), kwargs=_schedule),
    Way("schedule-preview", "get", SYSTEM, data=lambda s: {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}),
    # --- /api/: monitoring ---------------------------------------------------------------------
    Way("stats", "get", SYSTEM),
    Way("analytics-types", "get", SYSTEM),
    Way("analytics-users", "get", SYSTEM),
    Way("analytics-errors", "get", SYSTEM),
    Way("analytics-trends", "get", SYSTEM),
    Way("analytics-peak-hours", "get", SYSTEM),
    Way("metrics-series", "get", SYSTEM),
    Way("health", "get", row(200, 200, 200, 200, 200, 200, 200), check=_check_health),
    Way("alert-list", "get", ALERTS),
    Way("alert-acknowledge", "post", ALERTS, kwargs=lambda s: {"pk": s.alert.pk}),
    Way("alert-resolve", "post", ALERTS, kwargs=lambda s: {"pk": s.alert.pk}),
    Way("alert-rule-list", "get", ALERTS),  # monitoring.view_alertrule
    Way(
        "alert-rule-list",
        "post",
        row(401, 403, 403, 403, 403, 403, 201),  # monitoring.change_alertrule
        data=lambda s: {"name": "matrix-rule", "metric": "queue_depth", "threshold": 5},
    ),
    Way("alert-rule-detail", "get", ALERTS, kwargs=_rule),
    Way("alert-rule-detail", "patch", ALERTS, kwargs=_rule, data=lambda s: {"threshold": 3}),
    Way("alert-rule-detail", "delete", row(401, 403, 403, 403, 403, 403, 204), kwargs=_rule),
    Way("api-schema", "get", SIGNED_IN),
    Way("api-docs", "get", SIGNED_IN),
    Way("api-redoc", "get", SIGNED_IN),
    Way("jobadmin-api", "get", SIGNED_IN),
    # --- / (the standalone project): a redirect for everyone, to where each belongs (tests/admin/test_console_pages.py)
    Way("jobadmin-landing", "get", row(302, 302, 302, 302, 302, 302, 302), admin=True),
    # --- /metrics: a login opens nothing; a token or an allowed address does (see below) ------
    Way("prometheus-metrics", "get", row(403, 403, 403, 403, 403, 403, 403), extra={"REMOTE_ADDR": "203.0.113.9"}),
    # --- staff pages (console) -------------------------------------------------------------------
    Way("admin:jobadmin-monitor", "get", STAFF_PAGE, admin=True),
    Way("admin:jobadmin-monitor-state", "get", STAFF_PAGE, admin=True),
    Way("admin:jobadmin-analytics", "get", STAFF_PAGE, admin=True),
    Way("admin:jobadmin-queue-pause", "post", SUPERUSER_PAGE, admin=True, kwargs=lambda s: HIGH),
    Way("admin:jobadmin-queue-resume", "post", SUPERUSER_PAGE, admin=True, kwargs=lambda s: HIGH, setup=_pause_high),
    # --- the job admin -------------------------------------------------------------------------
    Way("admin:jobs_job_changelist", "get", STAFF_PAGE, admin=True),
    Way("admin:jobs_job_change", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"object_id": str(s.job.pk)}),
    Way("admin:jobs_job_history", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"object_id": str(s.job.pk)}),
    Way("admin:jobs_job_live", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"job_id": s.job.pk}),
    # Jobs are queued, not added by hand.
    Way("admin:jobs_job_add", "get", row(LOGIN, LOGIN, LOGIN, 403, 403, 403, 403), admin=True),
    Way(
        "admin:jobs_job_delete",
        "get",
        row(LOGIN, LOGIN, LOGIN, 403, 403, 403, 200),
        admin=True,
        kwargs=lambda s: {"object_id": str(s.job.pk)},
    ),
    Way("admin:jobs_job_enqueue", "get", STAFF_PAGE, admin=True),
    # The schedules' admin: seen like a statistic, changed with jobs.change_schedule.
    Way("admin:jobs_schedule_changelist", "get", STAFF_PAGE, admin=True),
    Way(
        "admin:jobs_schedule_change", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"object_id": _schedule(s)["pk"]}
    ),
    Way(
        "admin:jobs_schedule_history", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"object_id": _schedule(s)["pk"]}
    ),
    Way("admin:jobs_schedule_add", "get", row(LOGIN, LOGIN, LOGIN, 403, 403, 403, 200), admin=True),
    Way(
        "admin:jobs_schedule_delete",
        "get",
        row(LOGIN, LOGIN, LOGIN, 403, 403, 403, 200),
        admin=True,
        kwargs=lambda s: {"object_id": _schedule(s)["pk"]},
    ),
    Way("admin:jobs_job_enqueue_type", "get", STAFF_PAGE, admin=True, kwargs=lambda s: {"type_name": "demo"}),
    Way(
        "admin:jobs_job_enqueue_type",
        "post",
        SUPERUSER_PAGE,
        admin=True,
        kwargs=lambda s: {"type_name": "purge-history"},
        data=lambda s: {"_queue": "batch", "_priority": 0},
    ),
    Way("admin:jobs_job_cleanup_stalled", "post", ADMIN_SWEEP, admin=True),
    Way(
        "admin:jobs_job_act", "post", ADMIN_SWEEP, admin=True, kwargs=lambda s: {"job_id": s.job.pk, "action": "cancel"}
    ),
    Way(
        "admin:jobs_job_download",
        "get",
        row(LOGIN, LOGIN, LOGIN, 403, 404, 404, 404),
        admin=True,
        kwargs=lambda s: {"job_id": s.job.pk},
    ),
]


def _walk(patterns: list[Any], prefix: str = "", namespace: str | None = None) -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            name = f"{namespace}:{pattern.name}" if namespace else pattern.name
            yield prefix + str(pattern.pattern), name


def ways_in() -> set[str]:
    """Every URL name under /api/, /metrics, the console's staff pages and the job admin's pages."""
    names = set()
    for route, name in _walk(get_resolver().url_patterns):
        if (
            route.startswith("api/")
            or route == "metrics"
            or name.startswith(("jobadmin-", "admin:jobadmin-", "admin:jobs_job_", "admin:jobs_schedule_"))
        ):
            names.add(name)
    return names


def test_every_endpoint_has_a_row() -> None:
    assert ways_in() - {way.name for way in WAYS} == set(), "add a row to WAYS for each new endpoint"
    assert {way.name for way in WAYS} - ways_in() == set(), "a row for an endpoint that no longer exists"


@pytest.fixture
def scene(db: Any, settings: Any) -> Scene:
    from jobs import services

    settings.PROMETHEUS_TOKEN = ""
    settings.PROMETHEUS_ALLOWED_IPS = ["127.0.0.1"]
    services.queue_ensure_defaults()
    users = {
        "anonymous": None,
        "user": UserFactory(),
        "other": UserFactory(),
        "staff": UserFactory(is_staff=True),
        "viewer": grant(UserFactory(is_staff=True), policy.VIEW_JOBS),
        "changer": grant(UserFactory(is_staff=True), policy.CHANGE_JOBS),
        "super": UserFactory(is_staff=True, is_superuser=True),
    }
    batch = Batch.objects.create(name="scene", user=users["user"])
    job = JobFactory.create(user=users["user"], batch=batch)
    JobResult.objects.create(job=job, data={"rows": 1})
    ensure_builtin_rules(AlertRule)  # a transactional test's flush empties the table
    rule = AlertRule.objects.get(name="failure-burst")
    alert = Alert.objects.create(rule=rule, severity=rule.severity, message="test")
    return Scene(users=users, job=job, alert=alert, batch=batch)


def _call(way: Way, scene: Scene, role: str) -> Any:
    user = scene.users[role]
    client: Any = Client() if way.admin else APIClient()
    if user is not None:
        if way.admin:
            client.force_login(user)
        else:
            client.force_authenticate(user)
    url = reverse(way.name, kwargs=way.kwargs(scene))
    data = way.data(scene)
    if way.method == "get":
        return client.get(url, data, **way.extra)
    if way.method in ("patch", "delete"):
        return getattr(client, way.method)(url, data or None, format="json", **way.extra)
    if way.admin:
        return client.post(url, data, **way.extra)
    return client.post(url, data, format="json", **way.extra)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("way", WAYS, ids=lambda w: f"{w.method}-{w.name}")
def test_each_way_in_answers_each_role_as_the_table_says(way: Way, role: str, scene: Scene) -> None:
    Job.objects.filter(pk=scene.job.pk).update(status=way.job_status)
    scene.job.refresh_from_db()
    way.setup(scene)
    response = _call(way, scene, role)
    expected = way.expect[role]
    if expected == LOGIN:
        assert response.status_code == 302, (role, response.status_code)
        assert response["Location"].startswith(reverse("admin:login")), response["Location"]
    else:
        assert response.status_code == expected, (role, response.status_code, getattr(response, "content", b"")[:300])
    if way.check is not None:
        way.check(response, role)


def test_a_refusal_says_which_permission_is_missing(scene: Scene) -> None:
    for way in WAYS:
        if way.expect["staff"] != 403 or way.name == "prometheus-metrics":
            continue
        body = _call(way, scene, "staff").content.decode()
        assert "permission" in body or "staff" in body, way.name


# --- /metrics, which no login opens ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "allowed", "trusted", "meta", "expected"),
    [
        ("", ["127.0.0.1"], [], {"REMOTE_ADDR": "127.0.0.1"}, 200),
        ("", ["127.0.0.1"], [], {"REMOTE_ADDR": "10.1.2.3"}, 403),
        ("", ["127.0.0.1"], [], {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 403),
        ("", ["127.0.0.1"], ["127.0.0.1"], {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, 403),
        ("", ["10.0.0.0/8"], ["127.0.0.1"], {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.9.9.9"}, 200),
        ("t0ken", [], [], {"REMOTE_ADDR": "127.0.0.1"}, 403),
        ("t0ken", [], [], {"REMOTE_ADDR": "198.51.100.1", "HTTP_AUTHORIZATION": "Bearer t0ken"}, 200),
        ("t0ken", ["127.0.0.1"], [], {"REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": "Bearer wrong"}, 403),
        ("t0ken", ["127.0.0.1"], [], {"REMOTE_ADDR": "127.0.0.1"}, 200),
        ("", ["127.0.0.1"], [], {"REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": "Bearer "}, 403),
    ],
)
def test_metrics_answers_by_token_and_address_as_the_table_says(
    db: Any, settings: Any, token: str, allowed: list[str], trusted: list[str], meta: dict[str, Any], expected: int
) -> None:
    settings.PROMETHEUS_TOKEN = token
    settings.PROMETHEUS_ALLOWED_IPS = allowed
    settings.JOBADMIN_TRUSTED_PROXIES = trusted
    assert Client().get("/metrics", **meta).status_code == expected


# --- job types: who may queue each ---------------------------------------------------------------
ANYONE_SIGNED_IN = row(401, 201, 201, 201, 201, 201, 201)
JOB_TYPES = {
    "demo": ANYONE_SIGNED_IN,
    "export-jobs": ANYONE_SIGNED_IN,
    "purge-history": row(401, 403, 403, 403, 403, 403, 201),  # jobs.purge_history
    "management-command": row(401, 403, 403, 403, 403, 403, 201),  # jobs.run_management_command
}
# Params each type is queued with (valid ones, so that only access decides); {} for the others.
JOB_TYPE_PARAMS = {"management-command": {"command": "bridge_echo", "args": ["1"]}}


@pytest.fixture
def bridge_commands(settings: Any) -> None:
    settings.JOBADMIN_COMMANDS = ["bridge_echo"]  # tests/bridge


def test_every_job_type_has_a_row() -> None:
    # The application's types; other tests register throwaway ones of their own (tests/jobtypes).
    # Django tasks of the tests (tests/dtasks) are named for their module: task:tests.…
    registered = {
        t.name
        for t in all_job_types()
        if not t.func.__module__.startswith("tests.") and not t.name.startswith("task:tests.")
    }
    assert registered - set(JOB_TYPES) == set(), "add a row to JOB_TYPES"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("type_name", sorted(JOB_TYPES))
@pytest.mark.usefixtures("bridge_commands")
def test_each_job_type_is_queued_only_by_who_may_run_it(type_name: str, role: str, scene: Scene) -> None:
    client = APIClient()
    if scene.users[role] is not None:
        client.force_authenticate(scene.users[role])
    before = Job.objects.filter(type=type_name).count()
    params = JOB_TYPE_PARAMS.get(type_name, {})
    response = client.post("/api/jobs/", {"type": type_name, "params": params}, format="json")
    assert response.status_code == JOB_TYPES[type_name][role], (role, response.content[:300])
    queued = Job.objects.filter(type=type_name).count() - before
    assert queued == (1 if response.status_code == 201 else 0)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("type_name", sorted(JOB_TYPES))
@pytest.mark.usefixtures("bridge_commands")
def test_a_bulk_enqueue_asks_the_same_rule_for_each_member(type_name: str, role: str, scene: Scene) -> None:
    client = APIClient()
    if scene.users[role] is not None:
        client.force_authenticate(scene.users[role])
    before = Job.objects.count()
    members = [{"type": "demo", "params": {}}, {"type": type_name, "params": JOB_TYPE_PARAMS.get(type_name, {})}]
    response = client.post("/api/jobs/bulk-enqueue/", {"jobs": members}, format="json")
    assert response.status_code == JOB_TYPES[type_name][role], (role, response.content[:300])
    # All or nothing: a member the role may not queue keeps the other from being queued too.
    assert Job.objects.count() - before == (2 if response.status_code == 201 else 0)


# The command line asks the same rule: exit 0 (queued) or 3 (forbidden); "anonymous" is a
# username nobody has (3 too). Without --as the command acts as the system (tests/jobs/test_cli.py).
CLI_EXIT = {201: 0, 401: 3, 403: 3}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("type_name", sorted(JOB_TYPES))
@pytest.mark.usefixtures("bridge_commands")
def test_the_command_line_queues_a_job_type_only_for_who_may_run_it(type_name: str, role: str, scene: Scene) -> None:
    user = scene.users[role]
    pairs = [f"{key}={json.dumps(value)}" for key, value in JOB_TYPE_PARAMS.get(type_name, {}).items()]
    before = Job.objects.filter(type=type_name).count()
    code = 0
    try:
        call_command(
            "jobs", "enqueue", type_name, *pairs, "--as", user.username if user else "nobody", stdout=StringIO()
        )
    except CommandError as exc:
        code = exc.returncode
    assert code == CLI_EXIT[JOB_TYPES[type_name][role]], role
    assert Job.objects.filter(type=type_name).count() - before == (1 if code == 0 else 0)


@pytest.mark.usefixtures("bridge_commands")
def test_the_run_management_command_permission_alone_lets_a_user_queue_the_bridge(scene: Scene) -> None:
    user = grant(UserFactory(), policy.RUN_MANAGEMENT_COMMAND)
    client = APIClient()
    client.force_authenticate(user)
    body = {"type": "management-command", "params": JOB_TYPE_PARAMS["management-command"]}
    assert client.post("/api/jobs/", body, format="json").status_code == 201
    call_command("jobs", "enqueue", "management-command", "command=bridge_echo", 'args=["2"]', "--as", user.username,
                 stdout=StringIO())  # fmt: skip
    assert Job.objects.filter(type="management-command", user=user).count() == 2


# --- fair queues: a priority above the job type's default needs jobs.change_job -----------------------
# (priority asked, who may) — "demo" runs at its type's default, 0.
PRIORITIES = {
    "default": (None, row(401, 201, 201, 201, 201, 201, 201)),
    "at the default": (0, row(401, 201, 201, 201, 201, 201, 201)),
    "below the default": (-50, row(401, 201, 201, 201, 201, 201, 201)),
    "above the default": (1, row(401, 403, 403, 403, 403, 201, 201)),
    "the highest": (100, row(401, 403, 403, 403, 403, 201, 201)),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("asked", sorted(PRIORITIES))
def test_a_priority_above_the_types_default_is_queued_only_with_change_job(asked: str, role: str, scene: Scene) -> None:
    priority, expect = PRIORITIES[asked]
    client = APIClient()
    if scene.users[role] is not None:
        client.force_authenticate(scene.users[role])
    body: dict[str, Any] = {"type": "demo", "params": {"items": 1}}
    if priority is not None:
        body["priority"] = priority
    before = Job.objects.count()
    response = client.post("/api/jobs/", body, format="json")
    assert response.status_code == expect[role], (role, response.content[:300])
    assert Job.objects.count() - before == (1 if response.status_code == 201 else 0)
    if response.status_code == 403:
        assert policy.CHANGE_JOBS in response.json()["detail"]
    if response.status_code == 201 and priority is not None:
        assert Job.objects.get(pk=response.json()["id"]).priority == priority


# --- the websocket: every message and channel kind -----------------------------------------------
SUBSCRIBED, FORBIDDEN = "subscribed", messages.FORBIDDEN
SEES_ALL = row("closed", FORBIDDEN, FORBIDDEN, FORBIDDEN, SUBSCRIBED, SUBSCRIBED, SUBSCRIBED)
CHANNELS: dict[str, tuple[Callable[[Scene], str], dict[str, Any]]] = {
    "job": (
        lambda s: f"job:{s.job.pk}",
        row("closed", SUBSCRIBED, FORBIDDEN, FORBIDDEN, SUBSCRIBED, SUBSCRIBED, SUBSCRIBED),
    ),
    "user": (
        lambda s: f"user:{s.users['user'].pk}",
        row("closed", SUBSCRIBED, FORBIDDEN, FORBIDDEN, SUBSCRIBED, SUBSCRIBED, SUBSCRIBED),
    ),
    "batch": (
        lambda s: f"batch:{s.batch.pk}",
        row("closed", SUBSCRIBED, FORBIDDEN, FORBIDDEN, SUBSCRIBED, SUBSCRIBED, SUBSCRIBED),
    ),
    "stats": (lambda s: "stats", SEES_ALL),
    "alerts": (lambda s: "alerts", SEES_ALL),
    "all": (lambda s: "all", SEES_ALL),
}
# Each client message but ``subscribe`` (the channels above): what it is answered with.
MESSAGES: dict[str, tuple[Callable[[Any], dict[str, Any]], dict[str, Any]]] = {
    "ping": (lambda me: {"type": "ping"}, row("closed", *["pong"] * 6)),
    "unsubscribe": (
        lambda me: {"type": "unsubscribe", "channel": f"user:{me.pk}"},
        row("closed", *["unsubscribed"] * 6),
    ),
    "request-stats": (
        lambda me: {"type": "request-stats"},
        row("closed", FORBIDDEN, FORBIDDEN, FORBIDDEN, "job-stats", "job-stats", "job-stats"),
    ),
    "subscribe": (
        lambda me: {"type": "subscribe", "channel": "job:not-a-uuid"},
        row("closed", *[messages.UNKNOWN_CHANNEL] * 6),
    ),
}


def test_every_websocket_message_and_channel_kind_has_a_row() -> None:
    assert set(JobsConsumer.CLIENT_MESSAGES) == set(MESSAGES), "add a row to MESSAGES"
    assert set(policy.CHANNEL_KINDS) == set(CHANNELS), "add a row to CHANNELS"


def _reply(message: dict[str, Any]) -> str:
    return str(message["code"] if message["type"] == "error" else message["type"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
def test_each_websocket_message_and_channel_answers_each_role_as_the_table_says(
    role: str, scene: Scene, settings: Any
) -> None:
    settings.JOBADMIN_RELAY_IN_WEB = False
    me = scene.users[role]
    answers: dict[str, str] = {}

    async def scenario() -> None:
        communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        communicator.scope["user"] = me if me is not None else _anonymous()
        assert (await communicator.connect(timeout=3))[0]
        first = await communicator.receive_output(timeout=3)
        if first["type"] == "websocket.close":
            for name in [*CHANNELS, *MESSAGES]:
                answers[name] = "closed"
            return
        assert json.loads(first["text"])["type"] == "welcome"
        for kind, (channel, _) in CHANNELS.items():
            await communicator.send_to(text_data=json.dumps({"type": "subscribe", "channel": channel(scene)}))
            answers[kind] = _reply(json.loads(await communicator.receive_from(timeout=3)))
        for name, (message, _) in MESSAGES.items():
            await communicator.send_to(text_data=json.dumps(message(me)))
            answers[name] = _reply(json.loads(await communicator.receive_from(timeout=3)))
        await communicator.disconnect()

    run(scenario)
    expected = {name: cells[role] for name, (_, cells) in {**CHANNELS, **MESSAGES}.items()}
    assert answers == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", [role for role in ROLES if role != "anonymous"])
def test_an_open_socket_keeps_only_what_its_role_may_once_its_permissions_are_gone(
    role: str, scene: Scene, settings: Any
) -> None:
    """The same table, followed while the socket is open: the role's permissions (and superuser)
    are taken away, and within the re-check each channel it may no longer see ends with
    ``unsubscribed`` ``forbidden``; what a plain user (the job's owner, or not) may see stays."""
    settings.JOBADMIN_RELAY_IN_WEB = False
    settings.JOBADMIN_WS_REAUTH_INTERVAL = 0.2
    me = scene.users[role]
    plain = "user" if role == "user" else "other"
    held = {kind: channel(scene) for kind, (channel, cells) in CHANNELS.items() if cells[role] == SUBSCRIBED}
    keeps = {kind for kind in held if CHANNELS[kind][1][plain] == SUBSCRIBED}
    ended: set[str] = set()

    def strip() -> None:
        type(me).objects.filter(pk=me.pk).update(is_superuser=False)
        me.user_permissions.clear()

    async def scenario() -> None:
        from channels.db import database_sync_to_async

        communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        communicator.scope["user"] = me
        assert (await communicator.connect(timeout=3))[0]
        assert json.loads(await communicator.receive_from(timeout=3))["type"] == "welcome"
        for channel in held.values():
            await communicator.send_to(text_data=json.dumps({"type": "subscribe", "channel": channel}))
            assert json.loads(await communicator.receive_from(timeout=3))["type"] == "subscribed"
        await database_sync_to_async(strip)()
        by_channel = {channel: kind for kind, channel in held.items()}
        while len(ended) < len(held) - len(keeps):
            message = json.loads(await communicator.receive_from(timeout=5))
            if message["type"] == "unsubscribed":
                assert message["reason"] == FORBIDDEN
                ended.add(by_channel[message["channel"]])
        await communicator.disconnect()

    run(scenario)
    assert ended == set(held) - keeps


# Other spellings of the same channel: each answers each role as the canonical row says, and
# names the canonical channel (one subscription, one group, never a second one to fill).
SPELLINGS: dict[str, Callable[[Scene], str]] = {
    "user": lambda s: f"user:00{s.users['user'].pk}",
    "job": lambda s: f"job:{s.job.pk.hex.upper()}",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", [role for role in ROLES if role != "anonymous"])
def test_another_spelling_is_the_canonical_channel_and_a_deactivated_role_is_closed(
    role: str, scene: Scene, settings: Any
) -> None:
    settings.JOBADMIN_RELAY_IN_WEB = False
    settings.JOBADMIN_WS_REAUTH_INTERVAL = 0.2
    me = scene.users[role]
    answers: dict[str, tuple[str, str | None]] = {}
    closed: list[int] = []

    async def scenario() -> None:
        from channels.db import database_sync_to_async

        communicator = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        communicator.scope["user"] = me
        assert (await communicator.connect(timeout=3))[0]
        assert json.loads(await communicator.receive_from(timeout=3))["type"] == "welcome"
        for kind, spelling in SPELLINGS.items():
            await communicator.send_to(text_data=json.dumps({"type": "subscribe", "channel": spelling(scene)}))
            reply = json.loads(await communicator.receive_from(timeout=3))
            answers[kind] = (_reply(reply), reply.get("channel"))
        await database_sync_to_async(type(me).objects.filter(pk=me.pk).update)(is_active=False)
        while True:
            output = await communicator.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                closed.append(output["code"])
                break

    run(scenario)
    assert answers == {kind: (CHANNELS[kind][1][role], CHANNELS[kind][0](scene)) for kind in SPELLINGS}
    assert closed == [messages.CLOSE_UNAUTHENTICATED]


def _anonymous() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()
