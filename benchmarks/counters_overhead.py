"""The cost of ``/metrics``' counters (``jobs.counters``) per job, against the same engine without them.

Each round runs ``--jobs`` jobs in-process through the services a worker calls — enqueue, claim,
complete (three transactions, as a job takes) — once with the counters and once with
``counters.counter_add`` replaced by a no-op, alternating ``--rounds`` times on one scratch
database, and prints the time per job of each and the difference. Then it folds the pending
increments (``counters_fold``) and times a scrape's read (``counters_read``) before and after.

SQLite: a scratch file in a temporary folder. PostgreSQL: ``--postgres URL`` (a server; the
benchmark creates and drops its own database ``jobadmin_bench_counters``).

    .venv/bin/python -m benchmarks.counters_overhead [--jobs 1000] [--rounds 3] [--postgres postgres://…]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

PG_DB = "jobadmin_bench_counters"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (without a database name)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobadmin-bench-") as data_dir:
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        os.environ.update(DJANGO_SETTINGS_MODULE="benchmarks.settings", JOBADMIN_DATA_DIR=data_dir, LOG_LEVEL="WARNING")
        if args.postgres:
            import psycopg

            base = args.postgres.rstrip("/")
            with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
                conn.execute(f"CREATE DATABASE {PG_DB}")
            os.environ["DATABASE_URL"] = f"{base}/{PG_DB}"
        try:
            run(args.jobs, args.rounds)
        finally:
            if args.postgres:
                from django.db import connections

                connections.close_all()
                with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def run(jobs: int, rounds: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from jobs import counters, services
    from jobs.models import CounterEvent

    def one_job() -> None:
        services.job_enqueue(job_type="bench-noop")
        job = services.job_claim(queue="default", worker="bench:0")
        assert job is not None
        services.job_complete(job_id=job.pk, worker="bench:0", attempt=job.attempts, values={}, job=job)

    real: Callable[..., None] = counters.counter_add

    def nothing(**kwargs: Any) -> None:
        return None

    timings: dict[str, list[float]] = {"with counters": [], "without": []}
    for _ in range(max(1, jobs // 10)):  # warm up: statement caches, the file's first pages
        one_job()
    for _ in range(rounds):
        for label, add in (("without", nothing), ("with counters", real)):
            counters.counter_add = add  # type: ignore[assignment]
            started = time.perf_counter()
            for _ in range(jobs):
                one_job()
            timings[label].append((time.perf_counter() - started) / jobs * 1000)
    counters.counter_add = real  # type: ignore[assignment]
    load = os.getloadavg()[0]
    print(f"{connection.vendor}, {jobs} jobs x {rounds} rounds, load {load:.1f}")
    for label, values in timings.items():
        rounds_text = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {label:14s} {statistics.median(values):.3f} ms/job  (rounds: {rounds_text})")
    for name, pick in (("median", statistics.median), ("best", min)):
        extra = pick(timings["with counters"]) - pick(timings["without"])
        print(f"  counters cost ({name} round) {extra * 1000:.0f} us/job ({extra / pick(timings['without']):+.1%})")

    # The statement alone, as the services run it: inside a transaction that commits anyway.
    from django.db import transaction

    n = 5000
    with transaction.atomic():
        started = time.perf_counter()
        for _ in range(n):
            counters.counter_add(name=counters.COMPLETED, label="bench-noop", duration=0.01)
        one = (time.perf_counter() - started) / n
    print(f"  one increment inside a transaction: {one * 1e6:.1f} us (a job makes 2: enqueue and finish)")

    started = time.perf_counter()
    counters.counters_read()
    pending_read = time.perf_counter() - started
    pending = CounterEvent.objects.count()
    started = time.perf_counter()
    counters.counters_fold()
    fold = time.perf_counter() - started
    started = time.perf_counter()
    counters.counters_read()
    folded_read = time.perf_counter() - started
    print(f"  fold of {pending} pending increments: {fold * 1000:.1f} ms ({fold / max(pending, 1) * 1e6:.1f} us each)")
    print(f"  a scrape's read: {pending_read * 1000:.1f} ms with them pending, {folded_read * 1000:.1f} ms folded")


if __name__ == "__main__":
    main()
