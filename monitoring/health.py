"""``GET /api/health/``: one verdict (healthy, warning, critical) with the checks behind it.

The overall status is the worst check. Thresholds come from settings (``HEALTH_*``,
``JOBADMIN_LONG_RUNNING_THRESHOLD``). The HTTP status is 503 only when the database check
fails — the one thing without which this web process cannot serve — so a load balancer
does not take every web node out because, say, the workers are down.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from jobs import outage, signing_key, worker_reports
from jobs.models import JobStatus
from jobs.selectors import (
    job_active_count,
    job_long_running_count,
    jobs_finished_count,
    jobs_queued_exist,
    queue_limits_total,
)
from monitoring import metrics

logger = logging.getLogger(__name__)

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
STATUSES = (HEALTHY, WARNING, CRITICAL)
# The checks of a report, in its order (``monitoring.serializers.HealthSerializer`` names each).
CHECKS = ("database", "broker", "channel_layer", "workers", "monitor", "jobs")
_ORDER = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}


def _check(status: str, reason: str = "", **detail: Any) -> dict[str, Any]:
    return {"status": status, "reason": reason, **detail}


# Less free space than this where the SQLite file is counts as a full disk.
DISK_FULL_FREE_BYTES = 1 << 20


def database_disk_full() -> str | None:
    """Why the database's disk is full (writes fail while reads still work), or None.

    SQLite: the free space of the file system that holds the file, and the file's own limit
    (``PRAGMA max_page_count``). Any database: a write that failed on a full disk within
    ``jobs.outage.DISK_FULL_REMEMBERED`` seconds, in this process or (through the cache) another.
    """
    reasons = []
    if connection.vendor == "sqlite":
        folder = Path(str(connection.settings_dict["NAME"])).resolve().parent
        free = shutil.disk_usage(folder).free
        if free < DISK_FULL_FREE_BYTES:
            reasons.append(f"{free} bytes free where the database file is ({folder})")
        with connection.cursor() as cursor:
            pages = [cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "max_page_count")]
            unused = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        if not unused and pages[0] >= pages[1]:
            reasons.append(f"the database file is at its limit of {pages[1]} pages (max_page_count)")
    seen = outage.disk_full_seen()
    if seen is not None:
        reasons.append(f"a write failed on a full disk {seen:.0f} s ago")
    return "; ".join(reasons) or None


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _check(CRITICAL, f"database unreachable: {exc.__class__.__name__}")
    detail: dict[str, Any] = {
        "vendor": connection.vendor,
        "latency_ms": round(1000 * (time.perf_counter() - started), 2),
    }
    try:
        full = database_disk_full()
    except Exception as exc:
        logger.warning("health: could not tell whether the database's disk is full: %r", exc)
        full = None
    if full is not None:
        return _check(CRITICAL, f"disk full: {full}; writes fail, reads still work", disk_full=True, **detail)
    budget = database_connections()
    if budget is None:
        return _check(HEALTHY, **detail)
    own = budget.pop("own_limit")
    detail.update(budget)
    used, limit = budget["connections"], budget["connection_limit"]
    if used >= limit or (own and used >= CONNECTIONS_WARNING * limit):
        # Past the limit the next worker that connects is refused (docs/deploy.md, "Database connections").
        return _check(WARNING, f"{used} of the {limit} connections that may be open are in use", **detail)
    return _check(HEALTHY, **detail)


# Of a limit set for this role or this database: a warning before it is full. The server's
# own (max_connections) is shared with whatever else runs there: a warning once it is full.
CONNECTIONS_WARNING = 0.9


def database_connections() -> dict[str, Any] | None:
    """PostgreSQL: the tightest of the limits on new connections — this role's own, this
    database's, the server's less its superuser reserve — as the connections it counts, its
    size, and whether it is the role's or the database's own (``own_limit``); None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user),"
            " (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),"
            " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
            " (SELECT datconnlimit FROM pg_database WHERE datname = current_database()),"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
            " current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
        )
        row = cursor.fetchone()
    pairs = [
        (int(row[i]), int(row[i + 1]), i < 4) for i in (0, 2, 4) if row[i + 1] is not None and int(row[i + 1]) >= 0
    ]
    used, limit, own = max(pairs, key=lambda pair: pair[0] / max(pair[1], 1))
    return {"connections": used, "connection_limit": limit, "own_limit": own}


def check_broker() -> dict[str, Any]:
    from django_q.brokers import get_broker

    try:
        broker = get_broker()
        broker.ping()
        size = broker.queue_size()
    except Exception as exc:
        # A warning, not critical: the API serves and enqueues (jobs are committed), and the
        # wake-ups are sent again once the broker is back.
        return _check(WARNING, f"broker unreachable: {exc.__class__.__name__}; wake-ups wait until it is back")
    detail: dict[str, Any] = {"broker": broker.__class__.__name__, "pending_wakeups": size}
    client = getattr(broker, "connection", None)
    if not isinstance(client, redis.Redis):
        return _check(HEALTHY, **detail)  # the ORM broker: its memory is the database's
    try:
        memory = redis_memory(client)
    except redis.RedisError as exc:
        return _check(WARNING, f"broker's Redis did not say its memory: {exc.__class__.__name__}", **detail)
    detail["redis_memory"] = memory
    limit, used = memory["maxmemory_bytes"], memory["used_bytes"]
    if limit and memory["evicted_keys"] and memory["policy"] != "noeviction":
        return _check(
            WARNING,
            f"Redis evicted {memory['evicted_keys']} key(s) at its maxmemory ({memory['policy']}): "
            "wake-ups among them are sent again by the monitor, live subscribers resume from the log",
            **detail,
        )
    if limit and used >= REDIS_MEMORY_WARNING * limit:
        refused = memory["refused_out_of_memory"]
        return _check(
            WARNING,
            f"Redis uses {used / limit:.0%} of its maxmemory ({limit / 2**20:.1f} MiB, {memory['policy']}); "
            f"{refused} write(s) refused as out of memory since it started",
            **detail,
        )
    return _check(HEALTHY, **detail)


# Of a broker Redis's maxmemory, the share in use from which health warns.
REDIS_MEMORY_WARNING = 0.9


def redis_memory(client: redis.Redis) -> dict[str, Any]:
    """What Redis says of its memory (INFO memory, stats, errorstats): in use, its limit and
    policy, keys it evicted and commands it refused as out of memory since it started."""
    info = client.info("memory") | client.info("stats") | client.info("errorstats")
    return {
        "used_bytes": int(info["used_memory"]),
        "maxmemory_bytes": int(info.get("maxmemory", 0)),
        "policy": str(info.get("maxmemory_policy", "")),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "refused_out_of_memory": int((info.get("errorstat_OOM") or {}).get("count", 0)),
    }


def check_channel_layer() -> dict[str, Any]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return _check(CRITICAL, "no channel layer configured")
    name = layer.__class__.__name__
    if settings.REDIS_URL:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
        except redis.RedisError as exc:
            # Live updates pause; sockets resume without loss (``since``) once it is back.
            return _check(WARNING, f"channel layer Redis unreachable: {exc.__class__.__name__}", layer=name)
    return _check(HEALTHY, layer=name)


def check_workers() -> dict[str, Any]:
    clusters = metrics.live_clusters()  # only those that sign with this process's key
    workers = sum(c["workers"] for c in clusters)
    limits = queue_limits_total()
    other = signing_key.other_key_records()
    detail: dict[str, Any] = {
        "workers": workers,
        "clusters": len(clusters),
        "capacity": limits,
        "other_key_workers": sum(int(record.get("workers") or 0) for record in other),
        "other_key_hosts": sorted({str(record.get("host")) for record in other}),
    }
    problems: list[tuple[str, str]] = []
    reported = worker_reports.database_error_records()
    if reported:
        now = time.time()
        detail["database_errors"] = [
            {
                "worker": str(record["worker"]),
                "error": str(record["error"]),
                "disk_full": bool(record.get("disk_full")),
                "seconds_ago": round(max(0.0, now - float(record.get("at") or now)), 1),
            }
            for record in reported
        ]
        # Every live worker failing (or none known alive): no job starts at all.
        problems.append(
            (
                CRITICAL if len(reported) >= workers else WARNING,
                f"{len(reported)} worker(s) cannot reach the database ({reported[-1]['error'][:120]}): "
                "they take no job until it answers",
            )
        )
    if other:
        # Their pushers take wake-ups off the broker and drop them: with no worker that reads
        # them, no job runs (critical); beside such workers, jobs wait for another wake-up.
        problems.append(
            (
                WARNING if workers else CRITICAL,
                f"{detail['other_key_workers']} workers ({len(other)} cluster(s) on "
                f"{', '.join(detail['other_key_hosts'])}) cannot read wake-ups: their DJANGO_SECRET_KEY "
                "differs from this process's",
            )
        )
    failures = outage.database_failures()
    refused = {who: f for who, f in failures.items() if f.get("refused")}
    unreachable = {who: f for who, f in failures.items() if not f.get("refused")}
    # Workers that cannot connect run nothing, however many are alive (issue 21).
    for found, key, what in (
        (refused, "refused_connections", "refused by the database for want of connections"),
        (unreachable, "database_unreachable", "cannot reach the database"),
    ):
        if found:
            detail[key] = sorted(found)
            first = next(iter(found.values()))["error"].splitlines()[0]
            problems.append(
                (CRITICAL if jobs_queued_exist() else WARNING, f"{len(found)} process(es) {what} ({first})")
            )
    if workers and workers < limits:
        # The limits promise that many jobs at once; fewer worker processes mean a busy
        # queue holds every worker and another queue's jobs wait (docs/jobs.md, capacity).
        problems.append(
            (WARNING, f"{workers} live workers cannot serve the queues' summed limit of {limits} jobs at once")
        )
    if not workers:
        queued = jobs_queued_exist()
        problems.append(
            (CRITICAL if queued else WARNING, "no live workers" + (" while jobs are queued" if queued else ""))
        )
    if not problems:
        return _check(HEALTHY, **detail)
    status = max((status for status, _ in problems), key=_ORDER.__getitem__)
    return _check(status, "; ".join(reason for _, reason in problems), **detail)


def monitor_heartbeat(now: datetime | None = None) -> None:
    """Called by the monitor loop: proves to every process that it is alive."""
    cache.set(metrics.MONITOR_HEARTBEAT_CACHE_KEY, (now or timezone.now()).timestamp(), None)


# The monitor's lease (jobadmin.singleton): on PostgreSQL the row of this name in
# MonitorLease; the lease's own connection carries this application_name, the host and the pid.
MONITOR_LEASE_NAME = "monitor"
MONITOR_APPLICATION_NAME = "jobadmin-monitor"


def monitor_leader() -> dict[str, Any] | None:
    """The monitor that holds the lease: host, pid, and the lease's age (seconds since the
    leader last renewed it); None when no monitor leads.

    On PostgreSQL read from the lease row, on the database's clock: a lease that ran out
    has no leader, whatever its holder's session still does. On SQLite from the lock file,
    whose holder is alive while its heartbeat is fresh.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT holder, term, EXTRACT(EPOCH FROM clock_timestamp() - renewed_at),"
                " EXTRACT(EPOCH FROM clock_timestamp() - acquired_at)"
                " FROM monitoring_monitorlease WHERE name = %s AND expires_at > clock_timestamp() AND holder <> ''",
                [MONITOR_LEASE_NAME],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        holder, term, age, leading = row
        host, _, pid = str(holder).rpartition(" ")
        return {
            "host": host or "?",
            "pid": int(pid) if pid.isdigit() else None,
            "term": int(term),
            "lease_age_seconds": round(float(age or 0.0), 1),
            "leading_for_seconds": round(float(leading or 0.0), 1),
        }
    path = settings.JOBADMIN_DATA_DIR / "monitor.lock"
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    if not holder:
        return None
    beat = cache.get(metrics.MONITOR_HEARTBEAT_CACHE_KEY)
    return {
        "host": holder.get("host"),
        "pid": holder.get("pid"),
        "lease_age_seconds": round(time.time() - float(beat), 1) if beat is not None else None,
        "leading_for_seconds": round(time.time() - float(holder.get("since", time.time())), 1),
    }


def check_monitor(now: datetime) -> dict[str, Any]:
    try:
        leader = monitor_leader()
    except Exception as exc:  # the database is away: the database check says so
        logger.warning("health: reading the monitor's lease failed: %r", exc)
        leader = None
    # The relay's lag (the gauge it stores; gone a minute after no relay reports).
    lag = metrics.event_lag_ms()
    beat = cache.get(metrics.MONITOR_HEARTBEAT_CACHE_KEY)
    if beat is None:
        return _check(WARNING, "the monitor has never reported", leader=leader, relay_lag_ms=lag)
    age = now.timestamp() - float(beat)
    detail: dict[str, Any] = {"last_seen_seconds": round(age, 1), "leader": leader, "relay_lag_ms": lag}
    if age > settings.HEALTH_MONITOR_STALE:
        return _check(WARNING, f"the monitor last reported {age:.0f} s ago", **detail)
    if leader is None and connection.vendor == "postgresql":
        return _check(WARNING, "no monitor holds the lease (a standby takes over)", **detail)
    if lag is not None and lag > 1000 * settings.HEALTH_RELAY_LAG_WARNING:
        return _check(WARNING, f"the relay publishes events {lag / 1000:.1f} s after they happen", **detail)
    return _check(HEALTHY, **detail)


def check_jobs(now: datetime) -> dict[str, Any]:
    window = settings.HEALTH_FAILURES_WINDOW
    failures = jobs_finished_count(
        since=now - timedelta(seconds=window), until=now + timedelta(microseconds=1), status=JobStatus.FAILED
    )
    active = job_active_count()
    long_running = job_long_running_count(now=now)
    detail = {"failures": failures, "failures_window_seconds": window, "active": active, "long_running": long_running}
    reasons: list[str] = []
    status = HEALTHY
    if failures > settings.HEALTH_FAILURES_CRITICAL:
        status = CRITICAL
        reasons.append(f"{failures} jobs failed in the last {window // 60} min")
    if long_running:
        status = max(status, WARNING, key=_ORDER.__getitem__)
        minutes = settings.JOBADMIN_LONG_RUNNING_THRESHOLD / 60
        reasons.append(f"{long_running} job(s) running longer than {minutes:g} min")
    if active > settings.HEALTH_ACTIVE_WARNING:
        status = max(status, WARNING, key=_ORDER.__getitem__)
        reasons.append(f"{active} jobs active (more than {settings.HEALTH_ACTIVE_WARNING})")
    return _check(status, "; ".join(reasons), **detail)


def _failed_check(exc: Exception) -> dict[str, Any]:
    """A check that raised: critical, unless the cache (Redis) it reads is away, which the
    API rides out (rate limits fall back, jobs are kept): then a warning."""
    import redis

    if isinstance(exc, redis.RedisError):
        return _check(WARNING, f"not checked: the cache (Redis) is unreachable: {exc.__class__.__name__}")
    return _check(CRITICAL, f"check failed: {exc.__class__.__name__}")


def health_report(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    checks: dict[str, dict[str, Any]] = {"database": check_database()}
    guarded: dict[str, Callable[[], dict[str, Any]]] = {
        "broker": check_broker,
        "channel_layer": check_channel_layer,
        "workers": check_workers,
        "monitor": lambda: check_monitor(now),
        "jobs": lambda: check_jobs(now),
    }
    for name, check in guarded.items():
        if checks["database"]["status"] == CRITICAL and name in ("workers", "jobs"):
            checks[name] = _check(CRITICAL, "not checked: the database is unreachable")
            continue
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = _failed_check(exc)
    status = max((c["status"] for c in checks.values()), key=_ORDER.__getitem__)
    reasons = [f"{name}: {c['reason']}" for name, c in checks.items() if c["status"] != HEALTHY and c["reason"]]
    return {"status": status, "checked_at": now.isoformat(), "reasons": reasons, "checks": checks}
