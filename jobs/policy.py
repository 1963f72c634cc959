"""Who may see and do what: the one home of every access rule (DESIGN.md, "Access policy").

The API's permission classes (``jobs.api.permissions``), the admin and staff pages, the
websocket consumer, ``/metrics`` — and what comes next (batches, schedules, SSE and
long-poll, the command line, the ``django.tasks`` backend) — ask this module; none of
them keeps a rule of its own. Each rule is a function of the user (and the object); the
permissions they test are named once, below.

Roles, from the contract:

- anonymous: the bare health verdict and the login, nothing else;
- a user: their own jobs and batches (see, act, subscribe), the job types they may run,
  their own user channel;
- ``jobs.view_job``: everyone's jobs, batches, schedules, statistics, analytics, metrics,
  health details, the monitor and analytics pages, the ``stats``/``alerts``/``all``
  channels and ``request-stats``; tracebacks and worker names. ``jobs.change_job``
  implies it, as it does in the Django admin (one cannot act on what one cannot see);
- ``jobs.change_job``: acting on another user's job (and sweeping stalled ones);
- ``jobs.pause_queue``, ``jobs.change_schedule``, ``monitoring.view_alert`` /
  ``monitoring.change_alert``, ``monitoring.view_alertrule`` / ``monitoring.change_alertrule``, ``jobs.purge_history``,
  ``jobs.run_management_command``: what their names say.

``is_staff`` alone grants nothing beyond the admin's login; superusers hold every
permission (Django's ``has_perm``). A refusal says which permission is missing
(``missing``), never shows the data, and is worded the same whether or not the object
exists.

This module imports nothing from the other apps (``jobs`` imports none of them); the
``monitoring.*`` permissions are plain names here.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet
from django.http.request import split_domain_port, validate_host
from django.urls import NoReverseMatch, reverse

from jobs.exceptions import JobError
from jobs.models import Batch, Job

if TYPE_CHECKING:
    from django.http import HttpRequest

    from jobs.registry import JobType

# --- the permissions, named once ------------------------------------------------------------
VIEW_JOBS = "jobs.view_job"
CHANGE_JOBS = "jobs.change_job"
PAUSE_QUEUE = "jobs.pause_queue"
CHANGE_SCHEDULE = "jobs.change_schedule"
PURGE_HISTORY = "jobs.purge_history"
RUN_MANAGEMENT_COMMAND = "jobs.run_management_command"
VIEW_ALERT = "monitoring.view_alert"
VIEW_ALERTRULE = "monitoring.view_alertrule"
CHANGE_ALERT = "monitoring.change_alert"
CHANGE_ALERTRULE = "monitoring.change_alertrule"

# A job type that needs no permission but staff (``@job(..., permission=STAFF)``).
STAFF = "staff"


class AccessDenied(JobError):
    """Refused by the policy; ``str()`` says which permission is missing. Nothing was changed."""

    def __init__(self, message: str, *, permission: str | None = None) -> None:
        self.permission = permission
        super().__init__(message)


def missing(permission: str, what: str) -> str:
    """The wording of every refusal: what was refused and which permission it needs."""
    return f"{what} needs the '{permission}' permission."


# --- who is who ------------------------------------------------------------------------------
def signed_in(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def has(user: Any, permission: str) -> bool:
    """``user`` holds ``permission`` (superusers hold every one)."""
    return signed_in(user) and bool(user.has_perm(permission))


def may_see_all_jobs(user: Any) -> bool:
    """Everyone's jobs and all that is derived from them (statistics, analytics, metrics,
    health details, the live monitor, the system channels): ``jobs.view_job``, or
    ``jobs.change_job``, which implies it."""
    return has(user, VIEW_JOBS) or has(user, CHANGE_JOBS)


# --- jobs ------------------------------------------------------------------------------------
def visible_jobs(*, user: Any, queryset: QuerySet[Job] | None = None) -> QuerySet[Job]:
    """The jobs ``user`` may see: all with ``jobs.view_job``, their own otherwise, none anonymous."""
    queryset = Job.objects.all() if queryset is None else queryset
    if not signed_in(user):
        return queryset.none()
    if may_see_all_jobs(user):
        return queryset
    return queryset.filter(user=user)


def may_see_job(*, user: Any, job: Job) -> bool:
    return signed_in(user) and (job.user_id == user.pk or may_see_all_jobs(user))


def may_act_on_job(*, user: Any, job: Job) -> bool:
    """Cancel, retry, pause, resume: one's own job, or anyone's with ``jobs.change_job``."""
    return signed_in(user) and (job.user_id == user.pk or has(user, CHANGE_JOBS))


ACT_ON_OTHERS = missing(CHANGE_JOBS, "Acting on another user's job")


def may_sweep_jobs(user: Any) -> bool:
    """Actions over every user's jobs at once (clean up stalled)."""
    return has(user, CHANGE_JOBS)


def may_see_job_internals(user: Any) -> bool:
    """Tracebacks (server paths) and worker names; an owner sees the error message only."""
    return may_see_all_jobs(user)


def job_type_permission(job_type: JobType) -> str | None:
    return job_type.permission


def may_run_job_type(*, user: Any, job_type: JobType) -> bool:
    """The type's ``permission`` (or staff, for ``STAFF``); any signed-in user when it names none.

    Every way a job is queued asks this: the API, the enqueue form, batches, schedules, the
    command line and the ``django.tasks`` backend (through ``services.job_enqueue``).
    """
    if not signed_in(user):
        return False
    needed = job_type.permission
    if needed is None:
        return True
    if needed == STAFF:
        return bool(user.is_staff)
    return has(user, needed)


def require_may_run_job_type(*, user: Any, job_type: JobType) -> None:
    if not may_run_job_type(user=user, job_type=job_type):
        needed = job_type.permission or "login"
        if needed == STAFF:
            raise AccessDenied(f"Running {job_type.name!r} jobs is for staff.", permission=STAFF)
        raise AccessDenied(missing(needed, f"Running {job_type.name!r} jobs"), permission=needed)


def may_set_priority(*, user: Any, job_type: JobType, priority: int | None) -> bool:
    """A priority above the type's default needs ``jobs.change_job`` (fair queues: otherwise
    anyone could put their jobs ahead of everyone's). At or below it, or none given: anyone
    who may run the type. Asked by ``services.job_enqueue`` for every way a job is queued."""
    return priority is None or priority <= job_type.priority or has(user, CHANGE_JOBS)


def require_may_set_priority(*, user: Any, job_type: JobType, priority: int | None) -> None:
    if not may_set_priority(user=user, job_type=job_type, priority=priority):
        what = f"A priority above {job_type.name!r}'s default ({job_type.priority})"
        raise AccessDenied(missing(CHANGE_JOBS, what), permission=CHANGE_JOBS)


def runnable_job_types(*, user: Any, job_types: Iterable[JobType]) -> list[JobType]:
    return [job_type for job_type in job_types if may_run_job_type(user=user, job_type=job_type)]


# --- batches and schedules (rules ready for them) ---------------------------------------------
def may_see_batch(*, user: Any, batch: Any) -> bool:
    """A batch is its owner's like a job; ``jobs.view_job`` sees all."""
    return signed_in(user) and (getattr(batch, "user_id", None) == user.pk or may_see_all_jobs(user))


def may_act_on_batch(*, user: Any, batch: Any) -> bool:
    return signed_in(user) and (getattr(batch, "user_id", None) == user.pk or has(user, CHANGE_JOBS))


ACT_ON_OTHERS_BATCH = missing(CHANGE_JOBS, "Acting on another user's batch")


def visible_batches(*, user: Any, queryset: QuerySet[Batch] | None = None) -> QuerySet[Batch]:
    """The batches ``user`` may see, as ``visible_jobs``: all with ``jobs.view_job``, their own otherwise."""
    queryset = Batch.objects.all() if queryset is None else queryset
    if not signed_in(user):
        return queryset.none()
    if may_see_all_jobs(user):
        return queryset
    return queryset.filter(user=user)


def may_see_schedules(user: Any) -> bool:
    return may_see_all_jobs(user) or has(user, CHANGE_SCHEDULE)


def may_change_schedules(user: Any) -> bool:
    """Create, edit, pause, resume, run now; the schedule's type must also be runnable by ``user``."""
    return has(user, CHANGE_SCHEDULE)


# --- queues --------------------------------------------------------------------------------
def may_see_queues(user: Any) -> bool:
    """Queue depth and load count everyone's jobs: a statistic."""
    return may_see_all_jobs(user) or has(user, PAUSE_QUEUE)


def may_pause_queues(user: Any) -> bool:
    return has(user, PAUSE_QUEUE)


# --- monitoring ----------------------------------------------------------------------------
def may_see_statistics(user: Any) -> bool:
    """Statistics, analytics, the metric series, the monitor and analytics pages."""
    return may_see_all_jobs(user)


def may_see_health_details(user: Any) -> bool:
    """Anyone gets the health verdict (a load balancer); the checks behind it need ``jobs.view_job``."""
    return may_see_all_jobs(user)


def may_see_alerts(user: Any) -> bool:
    return has(user, VIEW_ALERT) or has(user, CHANGE_ALERT)


def may_change_alerts(user: Any) -> bool:
    """Acknowledge and resolve."""
    return has(user, CHANGE_ALERT)


def may_see_alert_rules(user: Any) -> bool:
    return has(user, VIEW_ALERTRULE) or has(user, CHANGE_ALERTRULE)


def may_change_alert_rules(user: Any) -> bool:
    return has(user, CHANGE_ALERTRULE)


def may_use_api(user: Any) -> bool:
    """The API, its schema and interactive docs: a login."""
    return signed_in(user)


def may_run_management_commands(user: Any) -> bool:
    return has(user, RUN_MANAGEMENT_COMMAND)


# --- live channels (websocket, SSE, long-poll) --------------------------------------------------
SYSTEM_CHANNELS = ("stats", "alerts", "all")
CHANNEL_KINDS = ("job", "user", "batch", *SYSTEM_CHANNELS)
FORBIDDEN_CHANNEL = "you may not subscribe to this channel"


@dataclass(frozen=True)
class Channel:
    """A parsed channel name: ``kind`` (one of ``CHANNEL_KINDS``) and its key (a job id, a user id)."""

    kind: str
    key: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.key}" if self.key else self.kind


# One spelling per channel: a name is parsed into its canonical form, and everything keyed by a
# channel (a socket's subscriptions, its layer group, the ``subscribed`` reply) uses that form,
# so ``user:01`` or an upper-case job id is the same subscription as ``user:1`` / the lower-case id.
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and below 2**63 (a database integer)
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def parse_channel(name: Any) -> Channel | None:
    """``job:<uuid>``, ``user:<id>``, ``batch:<id>``, ``stats``, ``alerts``, ``all``; None for anything else.

    The result is canonical: a job id in lower case with dashes (upper case and the form without
    dashes are accepted), an id without leading zeros. Nothing else is accepted: no sign, no
    space, no non-ASCII digit, no braces or ``urn:uuid:`` (``uuid.UUID`` would take those), no
    id past a database integer.
    """
    if not isinstance(name, str):
        return None
    if name in SYSTEM_CHANNELS:
        return Channel(name)
    kind, _, key = name.partition(":")
    if kind == "job" and _UUID.fullmatch(key):
        return Channel("job", str(uuid.UUID(key)))
    if kind in ("user", "batch") and _ID.fullmatch(key):
        return Channel(kind, str(int(key)))
    return None


def may_subscribe(*, user: Any, channel: Channel) -> bool:
    """Whether ``user`` may receive ``channel``'s events (live, replayed, streamed or polled).

    A job channel costs one indexed read whatever the answer, and the answer for a job
    that does not exist is the same as for another user's: neither wording nor timing
    tells whether an id exists.
    """
    if not signed_in(user):
        return False
    if channel.kind in SYSTEM_CHANNELS:
        return may_see_all_jobs(user)
    if channel.kind == "user":
        return int(channel.key) == user.pk or may_see_all_jobs(user)
    if channel.kind == "job":
        return visible_jobs(user=user).filter(id=channel.key).exists()
    if channel.kind == "batch":
        return visible_batches(user=user).filter(pk=int(channel.key)).exists()
    return False


def may_request_stats(user: Any) -> bool:
    return may_see_statistics(user)


# --- the ways in that are not a login: /metrics and origins ----------------------------------
def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return networks


def address_in(address: str, entries: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in _networks(entries))


def client_address(*, peer: str, forwarded_for: str = "") -> str:
    """The client's address: the connecting peer, unless that peer is a proxy named in
    ``JOBADMIN_TRUSTED_PROXIES``; then the right-most address of ``X-Forwarded-For`` that is
    not itself a trusted proxy (addresses further left were written by the client)."""
    if not trusted_proxy(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted_proxy(hop):
            return hop
    return hops[0] if hops else peer


def request_client_address(request: Any) -> str:
    """The client's address of an HTTP request (Django's or DRF's), by ``client_address``: the one
    rule every throttle and address rule reads (``jobs.api.throttling``, ``/metrics``, the admin login)."""
    meta = request.META
    return client_address(
        peer=str(meta.get("REMOTE_ADDR", "")), forwarded_for=str(meta.get("HTTP_X_FORWARDED_FOR", ""))
    )


def trusted_proxy(address: str) -> bool:
    """``address`` is a proxy named in ``JOBADMIN_TRUSTED_PROXIES``: its forwarded headers are believed."""
    return address_in(address, settings.JOBADMIN_TRUSTED_PROXIES)


def metrics_allowed_addresses() -> list[str]:
    """``PROMETHEUS_ALLOWED_IPS``; its default (settings) is loopback while no token is set, none once one is."""
    return list(settings.PROMETHEUS_ALLOWED_IPS)


def may_scrape_metrics(request: HttpRequest) -> bool:
    """``GET /metrics``: ``Authorization: Bearer <PROMETHEUS_TOKEN>``, or a client address in
    ``PROMETHEUS_ALLOWED_IPS``. A wrong token is refused even from an allowed address."""
    token = settings.PROMETHEUS_TOKEN
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if header:
        return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    return address_in(request_client_address(request), metrics_allowed_addresses())


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str | None:
    """``scheme://host:port`` with the default port written out, or None if it is not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host.lower()}:{port}"


def allowed_origins() -> list[str]:
    """The origins named in ``JOBADMIN_CORS_ORIGINS`` (besides each request's own)."""
    return [o for o in (normalise_origin(entry) for entry in settings.JOBADMIN_CORS_ORIGINS) if o]


def origin_allowed(*, origin: str, scheme: str, host: str) -> bool:
    """A browser's ``Origin`` against the request's own origin (``scheme`` and ``Host``, the host
    one of ``ALLOWED_HOSTS``) and ``JOBADMIN_CORS_ORIGINS``: scheme, host and port must all match."""
    wanted = normalise_origin(origin)
    if wanted is None:
        return False
    if wanted in allowed_origins():
        return True
    domain, _port = split_domain_port(host)
    allowed_hosts = list(settings.ALLOWED_HOSTS) or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed_hosts):
        return False
    return wanted == normalise_origin(f"{scheme}://{host}")


def cors_allowed(request: HttpRequest) -> bool:
    """Whether a request to the API from another origin gets CORS headers (preflight included):
    only under the API and only from an origin named in ``JOBADMIN_CORS_ORIGINS``."""
    origin = request.headers.get("origin")
    if not origin or not is_api_path(request.path_info):
        return False
    return normalise_origin(origin) in allowed_origins()


def api_path() -> str:
    """Where the JSON API is mounted (``/api/``, or ``/ops/api/`` under ``include()`` at ``ops/``)."""
    return reverse("jobadmin-api")


def is_api_path(path: str) -> bool:
    """``path`` is under the JSON API (its errors are JSON; CORS applies there only)."""
    try:
        return path.startswith(api_path())
    except NoReverseMatch:  # a project that does not include jobadmin.urls
        return False
