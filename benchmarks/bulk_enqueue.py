"""Bulk enqueue: N jobs queued in one call, against N single enqueues and a bare bulk insert.

Everything runs in one child process per configuration, on the embedded default (a scratch
SQLite file in WAL mode) and, when ``DATABASE_URL`` and ``REDIS_URL`` are set, on a scratch
PostgreSQL database with Redis. No cluster runs: this is the enqueue's own cost. Per round:

- ``bulk``: ``services.jobs_enqueue_many`` with N members (each validated, the policy asked,
  one transaction, a ``created`` event per job, the wake-ups counted);
- ``api``: the same through ``POST /api/jobs/bulk-enqueue/`` in process (JSON parsing, the
  serializer and the response included);
- baselines in the same run: N single ``services.job_enqueue`` calls (what a client had to
  do before), and the floor: ``Job.objects.bulk_create`` of N rows alone (no validation, no
  events, no wake-ups).

    .venv/bin/python -m benchmarks.bulk_enqueue
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python -m benchmarks.bulk_enqueue

Options: ``--jobs 10000 --rounds 2 --only sqlite|services``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.scratch import each_configuration

ROOT = Path(__file__).resolve().parent.parent
# docs/benchmarks.md: 10,000 jobs in at most 1 s on PostgreSQL and 2 s on SQLite.
TARGETS_S = {"orm": 2.0, "redis": 1.0}


def _run_child(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bulk_enqueue", "--child", "--jobs", str(args.jobs)]
    cmd += ["--rounds", str(args.rounds)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(name: str, result: dict[str, Any]) -> None:
    n, target = result["jobs"], TARGETS_S[result["broker"]]
    print(f"\n{name}: {n} jobs per call")
    for number, r in enumerate(result["rounds"], start=1):
        verdict = "meets" if r["bulk"] <= target else "misses"
        print(
            f"  round {number}: bulk {r['bulk']:.2f} s ({verdict} the {target:.0f} s target), "
            f"through the API {r['api']:.2f} s; "
            f"{n} single enqueues {r['single']:.2f} s (bulk = {r['bulk'] / r['single']:.2f} of it); "
            f"bare bulk_create of the rows alone {r['floor']:.2f} s (bulk = {r['bulk'] / r['floor']:.1f}x it)"
        )
    print(f"  statements of one bulk call of {n}: {result['statements']}; wake-ups counted: {result['wakeups']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["sqlite", "services"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    each_configuration(args.only, lambda env: _run_child(env, args), report)


# --- The child -----------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.models import Queue

    call_command("migrate", verbosity=0)
    if not settings.REDIS_URL:
        call_command("createcachetable", verbosity=0)
    settings.JOBADMIN_BULK_ENQUEUE_MAX = max(settings.JOBADMIN_BULK_ENQUEUE_MAX, args.jobs)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None  # the API round's body is as large as --jobs asks
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the in-process API client's host
    user = _user()
    members = [{"type": "bench-noop", "params": {}} for _ in range(args.jobs)]
    _bulk(user, members[:10])  # warm-up: imports, connections, the queue's rows
    rounds = []
    for _ in range(args.rounds):
        rounds.append(
            {
                "bulk": _timed(lambda: _bulk(user, members)),
                "api": _timed(lambda: _api(user, members)),
                "single": _timed(lambda: _single(user, args.jobs)),
                "floor": _timed(lambda: _floor(args.jobs)),
            }
        )
    Queue.objects.update(pending_wakeups=0)
    with CaptureQueriesContext(connection) as captured:
        _bulk(user, members)
    wakeups = dict(Queue.objects.values_list("name", "pending_wakeups"))
    result = {
        "jobs": args.jobs,
        "broker": "redis" if settings.REDIS_URL else "orm",
        "rounds": rounds,
        "statements": len(captured.captured_queries),
        "wakeups": {name: count for name, count in wakeups.items() if count},
    }
    print(json.dumps(result))


def _timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _user() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-bulk")
    return user


def _bulk(user: Any, members: list[dict[str, Any]]) -> None:
    from jobs import services

    services.jobs_enqueue_many(members=members, user=user, actor=user)


def _api(user: Any, members: list[dict[str, Any]]) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/jobs/bulk-enqueue/", {"jobs": members}, format="json")
    assert response.status_code == 201, response.content[:500]


def _single(user: Any, n: int) -> None:
    from jobs import services

    for _ in range(n):
        services.job_enqueue(job_type="bench-noop", user=user, actor=user)


def _floor(n: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from jobs.models import Job

    now = timezone.now()
    with transaction.atomic():
        Job.objects.bulk_create(Job(type="bench-noop", created_at=now, updated_at=now) for _ in range(n))


if __name__ == "__main__":
    main()
