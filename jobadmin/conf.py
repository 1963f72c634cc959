"""Every JobAdmin setting with its default, checked at start-up; and ``JOBADMIN_APPS``.

A host project adds JobAdmin with ``INSTALLED_APPS = [..., *JOBADMIN_APPS]`` and needs no
JobAdmin setting: each one below has its default, which ``apply_defaults`` sets on
``django.conf.settings`` where the host did not, before any other app is loaded (the
``jobadmin`` app is the first of ``JOBADMIN_APPS``, and django-q2 reads ``Q_CLUSTER`` while
the apps load). The code reads them as ``settings.NAME`` everywhere. A value of the wrong
type or out of range is a system-check error naming the setting (``check_settings``), so a
bad setting stops ``manage.py`` with a message instead of failing later with an
``AttributeError`` or a wrong job.

The standalone project (``jobadmin/settings.py``) is a host like any other: it reads the
environment, with these defaults.

This module imports nothing of Django's at import time beyond ``django.core.checks`` on
demand: a host's settings module imports it before Django is configured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# JobAdmin's own apps first (``jobadmin`` before all: it applies the defaults), then the
# third-party apps they need. None of ``django.contrib``: the host has those (admin, auth,
# contenttypes, sessions, messages, staticfiles).
JOBADMIN_APPS = [
    "jobadmin",
    "jobs",
    "monitoring",
    "live",
    "console",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
]

# Concurrency limit per queue, held across every worker process.
DEFAULT_QUEUES = {"high": 2, "default": 5, "batch": 3}


@dataclass(frozen=True)
class Setting:
    """One setting: its default, and what a valid value is (``kind``: float, int, bool, str, list, queues)."""

    default: Any
    kind: str
    minimum: float | None = None
    help: str = ""


def _positive(default: float, help: str = "") -> Setting:
    return Setting(default, "float", minimum=0.0, help=help)


SETTINGS: dict[str, Setting] = {
    "JOBADMIN_QUEUES": Setting(DEFAULT_QUEUES, "queues", help="queue name to its concurrency limit"),
    "JOBADMIN_DATA_DIR": Setting(None, "path", help="the monitor's lock file and the disk figure (default: var/)"),
    "JOBADMIN_MAX_JOB_TIMEOUT": Setting(3600, "int", minimum=1),
    "JOBADMIN_HEARTBEAT_INTERVAL": _positive(2.0),
    "JOBADMIN_CONTROL_POLL": _positive(0.5),
    "JOBADMIN_STALL_THRESHOLD": _positive(90.0),
    "JOBADMIN_DB_OUTAGE_GRACE": _positive(60.0),
    "JOBADMIN_DB_QUERY_TIMEOUT": _positive(
        30.0, help="the longest wait for PostgreSQL's answer before the connection counts as dead"
    ),
    "JOBADMIN_LONG_RUNNING_THRESHOLD": _positive(1800.0),
    "JOBADMIN_PROGRESS_INTERVAL": _positive(0.5),
    "JOBADMIN_WAKEUP_BUDGET": _positive(5.0),
    "JOBADMIN_WAKEUP_LOST_AFTER": _positive(5.0),
    "JOBADMIN_DISPATCH_INTERVAL": _positive(1.0),
    # How often the monitor looks for due schedules (docs/schedules.md: a run starts within 30 s).
    "JOBADMIN_SCHEDULE_INTERVAL": _positive(10.0),
    "JOBADMIN_SHUTDOWN_GRACE": _positive(30.0),
    "JOBADMIN_HISTORY_DAYS": Setting(30, "int", minimum=1),
    "JOBADMIN_PURGE_BATCH": Setting(2000, "int", minimum=1),
    "JOB_STATS_INTERVAL": _positive(5.0),
    "JOBADMIN_WEB_GC_THRESHOLD": Setting(20_000, "int", minimum=0),
    "JOBADMIN_RELAY_POLL": _positive(0.01),
    "JOBADMIN_RELAY_LISTEN": Setting(True, "bool"),
    "JOBADMIN_RELAY_SAFETY_POLL": _positive(1.0),
    "JOBADMIN_RELAY_GAP_GRACE": _positive(30.0),
    # None: in the web process exactly when no Redis carries the channel layer (see apply_defaults).
    "JOBADMIN_RELAY_IN_WEB": Setting(None, "bool"),
    "JOBADMIN_GAUGE_INTERVAL": _positive(1.0),
    "JOBADMIN_COALESCE_TCP_WRITES": Setting(True, "bool"),
    "JOBADMIN_SSE_KEEPALIVE": _positive(15.0, help="seconds between an SSE stream's keep-alives and access re-checks"),
    "JOBADMIN_METRICS_INTERVAL": _positive(10.0),
    "JOBADMIN_METRICS_RETENTION_DAYS": Setting(90, "int", minimum=1),
    "JOBADMIN_ALERTS_INTERVAL": _positive(5.0),
    "JOBADMIN_ROLLUP_REBUILD": _positive(600.0),
    "JOBADMIN_ROLLUP_MARGIN": _positive(300.0),
    "JOBADMIN_WEBHOOK_TIMEOUT": _positive(3.0),
    "JOBADMIN_WEBHOOK_RETRIES": Setting(3, "int", minimum=0),
    # Networks an alert webhook may reach besides the public internet (monitoring.webhooks).
    "JOBADMIN_WEBHOOK_ALLOWED_NETWORKS": Setting([], "list"),
    "ALERT_EMAIL_FROM": Setting("jobadmin@localhost", "str"),
    "HEALTH_FAILURES_CRITICAL": Setting(2, "int", minimum=0),
    "HEALTH_FAILURES_WINDOW": Setting(300, "int", minimum=1),
    "HEALTH_ACTIVE_WARNING": Setting(10, "int", minimum=0),
    "JOBADMIN_MONITOR_LEASE": _positive(5.0),
    "HEALTH_RELAY_LAG_WARNING": _positive(5.0),
    "HEALTH_MONITOR_STALE": _positive(60.0),
    "PROMETHEUS_TOKEN": Setting("", "str"),
    # None: loopback while no token is set, none once one is (jobs.policy.may_scrape_metrics).
    "PROMETHEUS_ALLOWED_IPS": Setting(None, "list"),
    "JOBADMIN_TRUSTED_PROXIES": Setting([], "list"),
    "JOBADMIN_CORS_ORIGINS": Setting([], "list"),
    # Management commands the ``management-command`` job type may run (jobs.bridge); none by default.
    "JOBADMIN_COMMANDS": Setting([], "list"),
    # The Redis that health pings, and that carries the broker, cache and layer of the standalone
    # project; a host that configures those itself may leave it empty.
    "REDIS_URL": Setting("", "str"),
    # The API's rate limits per scope (jobs.api.throttling): whatever the project's REST_FRAMEWORK says.
    "JOBADMIN_API_THROTTLE_RATES": Setting(
        {"user": "6000/min", "anon": "120/min", "enqueue": "600/min", "token": "20/min"}, "rates"
    ),
    # Bounded input (docs/security.md, "Input limits"; their own check is jobs.E010).
    "JOBADMIN_MAX_PARAM_STRING": Setting(10_000, "int", minimum=1),
    "JOBADMIN_MAX_PARAMS_BYTES": Setting(65_536, "int", minimum=2),
    "JOBADMIN_MAX_JSON_DEPTH": Setting(32, "int", minimum=2),
    # Bulk enqueue (docs/api.md, "Bulk enqueue"): the most jobs one call may queue.
    "JOBADMIN_BULK_ENQUEUE_MAX": Setting(10_000, "int", minimum=1),
    # Batches (docs/batches.md): the most members one batch may have.
    "JOBADMIN_BATCH_MAX": Setting(10_000, "int", minimum=1),
    # Fair queues (docs/engine.md, "The scheduler's rule"): a fraction in (0, 1], checked as jobs.E001.
    "JOBADMIN_USER_QUEUE_SHARE": _positive(0.5),
    # Websocket limits and access (docs/security.md, "Websocket limits and access").
    "JOBADMIN_WS_REAUTH_INTERVAL": _positive(5.0),
    "JOBADMIN_WS_MAX_SOCKETS_PER_USER": Setting(20, "int", minimum=1),
    "JOBADMIN_WS_MAX_SUBSCRIPTIONS": Setting(100, "int", minimum=2),
    "JOBADMIN_RUNALL_HOST": Setting("127.0.0.1", "str"),
    "JOBADMIN_RUNALL_PORT": Setting(8000, "int", minimum=1),
}


SCHEMA_CLASS = "drf_spectacular.openapi.AutoSchema"

# django-q2's broker and the cache notice a dead or silent Redis in bounded time (issue 21):
# a connect gives up after 2 s, a command whose answer does not come in 5 s fails (django-q2's
# BLPOP waits 1 s), and a connection idle for 10 s is checked with a PING before it is used.
REDIS_TIMEOUTS: dict[str, float] = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 10}


def redis_url_with_timeouts(url: str) -> str:
    """``url`` with ``REDIS_TIMEOUTS`` as query parameters (redis-py reads them), unless it names its own."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in REDIS_TIMEOUTS.items():
        query.setdefault(name, f"{value:g}")
    return urlunsplit(parts._replace(query=urlencode(query)))


def q_timeout(max_job_timeout: int, outage_grace: float) -> int:
    """django-q2's hard time-out of one wake-up: above the longest job, with room for an outcome
    that waits out a database outage (``jobs.tasks.Budget``)."""
    return max_job_timeout + int(outage_grace) + 60


def q_cluster(*, name: str, workers: int, timeout: int, poll: float, redis_url: str) -> dict[str, Any]:
    """The django-q2 cluster JobAdmin runs on; a host's own ``Q_CLUSTER`` serves where set."""
    cluster: dict[str, Any] = {
        "name": name,
        # One worker process per job the queues' limits allow at once, so that a busy queue
        # cannot take the workers another queue's jobs need (health warns when fewer run).
        "workers": workers,
        # JobAdmin enforces each job type's own timeout inside the job; the cluster's hard
        # timeout is the backstop, and `retry` must stay above it so a slow task is never
        # re-delivered while it still runs.
        "timeout": timeout,
        "retry": timeout + 60,
        "max_attempts": 1,
        "ack_failures": True,
        "save_limit": 100,
        "catch_up": False,
        "poll": poll,
        "label": "Tasks",
    }
    if redis_url:
        cluster["redis"] = redis_url_with_timeouts(redis_url)
    else:
        cluster["orm"] = "default"
    return cluster


def _layer_is_in_process(layers: Any) -> bool:
    backend = str((layers or {}).get("default", {}).get("BACKEND", ""))
    return not backend or backend.endswith("InMemoryChannelLayer")


def apply_defaults(settings: Any) -> None:
    """Set every JobAdmin setting the host left out to its default (``settings``: Django's)."""
    for name, spec in SETTINGS.items():
        if not hasattr(settings, name):
            setattr(settings, name, spec.default)
    if settings.JOBADMIN_DATA_DIR is None:
        base = getattr(settings, "BASE_DIR", None)
        settings.JOBADMIN_DATA_DIR = Path(base if base is not None else Path.cwd()) / "var"
    settings.JOBADMIN_DATA_DIR = Path(settings.JOBADMIN_DATA_DIR)
    if settings.PROMETHEUS_ALLOWED_IPS is None:
        settings.PROMETHEUS_ALLOWED_IPS = [] if settings.PROMETHEUS_TOKEN else ["127.0.0.1", "::1"]
    # The one DRF setting JobAdmin needs globally: drf-spectacular's decorators pick the schema
    # class when the views are defined, from DRF's global settings. Only where the project chose
    # none (DRF's own default serves only DRF's deprecated schema generation); a project that
    # chose another gets a check error for JobAdmin's schema (jobadmin.E003), not a changed API.
    rest = dict(getattr(settings, "REST_FRAMEWORK", {}) or {})
    if "DEFAULT_SCHEMA_CLASS" not in rest:
        rest["DEFAULT_SCHEMA_CLASS"] = SCHEMA_CLASS
        settings.REST_FRAMEWORK = rest
    if not getattr(settings, "ASGI_APPLICATION", None):
        # What `runall` starts daphne with; a host names its own asgi.py (jobadmin.routing).
        settings.ASGI_APPLICATION = "jobadmin.asgi.application"
    if not getattr(settings, "CHANNEL_LAYERS", None):
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if settings.JOBADMIN_RELAY_IN_WEB is None:
        settings.JOBADMIN_RELAY_IN_WEB = _layer_is_in_process(settings.CHANNEL_LAYERS)
    if not hasattr(settings, "Q_CLUSTER"):
        queues = settings.JOBADMIN_QUEUES if isinstance(settings.JOBADMIN_QUEUES, dict) else DEFAULT_QUEUES
        settings.Q_CLUSTER = q_cluster(
            name="jobadmin",
            workers=sum(v for v in queues.values() if isinstance(v, int)) or 1,
            timeout=q_timeout(int(settings.JOBADMIN_MAX_JOB_TIMEOUT), float(settings.JOBADMIN_DB_OUTAGE_GRACE)),
            poll=0.1,
            redis_url=settings.REDIS_URL,
        )


def _problem(name: str, value: Any, spec: Setting) -> str | None:
    """What is wrong with ``value`` for ``spec``, or None."""
    kind = spec.kind
    if kind == "queues":
        if not isinstance(value, dict) or not value:
            return "must be a non-empty dict of queue name to concurrency limit"
        for queue, limit in value.items():
            if not isinstance(queue, str) or not queue or not queue.replace("-", "").replace("_", "").isalnum():
                return f"queue name {queue!r} must be letters, digits, '-' or '_'"
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                return f"the limit of queue {queue!r} must be a whole number of at least 1, not {limit!r}"
        return None
    if kind == "rates":
        if not isinstance(value, dict):
            return "must be a dict of scope to rate ('20/min')"
        for scope in ("user", "anon", "enqueue", "token"):
            rate = value.get(scope)
            if not isinstance(rate, str) or not re.fullmatch(r"\d+/(s|sec|m|min|h|hour|d|day)\w*", rate):
                return f"needs a rate like '20/min' for scope {scope!r}, not {rate!r}"
        return None
    checks: dict[str, Callable[[Any], bool]] = {
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list | tuple) and all(isinstance(item, str) for item in v),
        "path": lambda v: isinstance(v, str | Path),
    }
    words = {
        "float": "a number",
        "int": "a whole number",
        "bool": "True or False",
        "str": "a string",
        "list": "a list of strings",
        "path": "a path",
    }
    if not checks[kind](value):
        return f"must be {words[kind]}, not {value!r}"
    if spec.minimum is not None and value < spec.minimum:
        return f"must be at least {spec.minimum:g}, not {value!r}"
    if kind == "float" and spec.minimum == 0.0 and value == 0:
        return "must be more than 0"
    return None


def setting_problems(settings: Any) -> list[str]:
    """Every JobAdmin setting of the wrong type or out of range, as a sentence naming it."""
    messages = []
    for name, spec in SETTINGS.items():
        problem = _problem(name, getattr(settings, name), spec)
        if problem is not None:
            messages.append(f"{name} {problem}.")
    return messages


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """System check: every JobAdmin setting of the right type and range (``jobadmin.E001``), and the
    timings that depend on each other (``jobadmin.E002``)."""
    from django.conf import settings
    from django.core import checks

    errors: list[Any] = [checks.Error(message, id="jobadmin.E001") for message in setting_problems(settings)]
    if errors:
        return errors
    cluster = settings.Q_CLUSTER
    needed = q_timeout(settings.JOBADMIN_MAX_JOB_TIMEOUT, settings.JOBADMIN_DB_OUTAGE_GRACE)
    timeout = cluster.get("timeout")
    if timeout is not None and timeout < settings.JOBADMIN_MAX_JOB_TIMEOUT:
        # A wake-up starts a job only if the job's own time-out fits in what is left of the
        # cluster's (jobs.tasks.Budget): nothing is killed, but a longer job never starts.
        errors.append(
            checks.Warning(
                f"Q_CLUSTER['timeout'] ({timeout}) is shorter than JOBADMIN_MAX_JOB_TIMEOUT "
                f"({settings.JOBADMIN_MAX_JOB_TIMEOUT}): a job type with a longer time-out never starts.",
                hint=f"Set Q_CLUSTER['timeout'] to {needed} (the longest job, the outage grace and a minute).",
                id="jobadmin.W002",
            )
        )
    retry = cluster.get("retry")
    if timeout is not None and retry is not None and retry <= timeout:
        errors.append(
            checks.Error(
                f"Q_CLUSTER['retry'] ({retry}) must be above its 'timeout' ({timeout}), or a running wake-up "
                "is delivered a second time.",
                id="jobadmin.E002",
            )
        )
    schema_class = (getattr(settings, "REST_FRAMEWORK", {}) or {}).get("DEFAULT_SCHEMA_CLASS", SCHEMA_CLASS)
    if not _is_spectacular(schema_class):
        errors.append(
            checks.Error(
                f"REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] is {schema_class!r}: JobAdmin's schema "
                "(api/schema/) needs drf-spectacular's AutoSchema or a subclass.",
                hint=f"Leave it unset, or set it to {SCHEMA_CLASS!r}.",
                id="jobadmin.E003",
            )
        )
    return errors


def _is_spectacular(schema_class: Any) -> bool:
    from django.utils.module_loading import import_string
    from drf_spectacular.openapi import AutoSchema

    try:
        cls = import_string(schema_class) if isinstance(schema_class, str) else schema_class
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, AutoSchema)
