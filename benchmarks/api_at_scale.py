"""How fast the jobs API answers with a million jobs in the history.

Fills scratch databases that it creates itself (PostgreSQL ``jobadmin_bench_api`` on the
server of ``BENCH_PG_URL``, and a SQLite file under /tmp) with N jobs spread over 30 days,
20 types, 50 users and 3 queues, about 5% failed, plus an event log for a tenth of them,
then times API requests through the whole Django/DRF stack (in-process client, no
network) and prints p50/p95 per request.

    .venv/bin/python benchmarks/api_at_scale.py                 # both backends, 1,000,000 jobs
    .venv/bin/python benchmarks/api_at_scale.py --rows 200000 --backend pg --repeat 20

Each backend runs in its own process (Django configures one database per process). The
scratch databases are dropped at the end unless ``--keep``. Not a test: it prints
figures and never fails because the machine was slow.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
# Scratch names of their own for runs side by side (``BENCH_PG_DB``, ``BENCH_SQLITE_PATH``).
PG_DB = os.environ.get("BENCH_PG_DB", "jobadmin_bench_api")
SQLITE_PATH = Path(os.environ.get("BENCH_SQLITE_PATH", "/tmp/jobadmin_bench_api.sqlite3"))

TYPES = [f"type-{i:02d}" for i in range(20)]
QUEUES = ["high", "default", "batch"]
USERS = 50
DAYS = 30
EVENTS_EVERY = 10  # one job in ten has an event log of EVENTS_PER_JOB rows
EVENTS_PER_JOB = 5

COLUMNS = [
    "id",
    "type",
    "params",
    "status",
    "queue",
    "priority",
    "user_id",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "run_after",
    "duration",
    "queue_wait",
    "progress",
    "current_step",
    "steps",
    "total_items",
    "processed_items",
    "error_count",
    "eta",
    "attempts",
    "max_attempts",
    "timeout",
    "error",
    "traceback",
    "heartbeat_at",
    "worker",
    "cancel_requested",
    "pause_requested",
    "resumable",
]
EVENT_COLUMNS = ["kind", "job_id", "owner_id", "actor_id", "payload", "created_at"]


# --- data -----------------------------------------------------------------------------------


def job_rows(n: int, user_ids: list[int], now: datetime, seed: int = 7) -> Any:
    """Yield (row, has_events) with the columns of ``COLUMNS`` as Python values."""
    rng = random.Random(seed)
    span = DAYS * 86400
    for i in range(n):
        created = now - timedelta(seconds=span * (1 - i / n) + rng.random())
        roll = rng.random()
        if i >= n - n // 500:  # the newest jobs are still live
            status = rng.choice(["queued", "running", "running", "paused"])
        elif roll < 0.05:
            status = "failed"
        elif roll < 0.06:
            status = "cancelled"
        else:
            status = "completed"
        wait = rng.expovariate(1 / 2.0)
        started = created + timedelta(seconds=wait) if status != "queued" else None
        duration = rng.lognormvariate(2.5, 1.2) if status in ("completed", "failed", "cancelled") else None
        finished = started + timedelta(seconds=duration) if started is not None and duration is not None else None
        total = rng.randint(10, 5000)
        done = total if status == "completed" else rng.randint(0, total)
        job_type = TYPES[int(rng.paretovariate(1.2)) % len(TYPES)]
        row = [
            uuid.uuid4(),
            job_type,
            {"items": total, "source": f"s3://exports/{job_type}/{i:07d}.csv"},
            status,
            QUEUES[i % 7 % 3],
            rng.choice((0, 0, 0, 5, 10, -5)),
            user_ids[int(rng.paretovariate(1.0)) % len(user_ids)],
            created,
            finished or started or created,
            started,
            finished,
            None,
            duration,
            wait if started is not None else None,
            100.0 * done / total,
            2 if status == "completed" else 1,
            ["Prepare", "Process", "Summarise"],
            total,
            done,
            0,
            None,
            1 if started is not None else 0,
            1,
            600,
            f"RuntimeError: boom at item {done}" if status == "failed" else "",
            "",
            started if status in ("running", "paused") else None,
            "bench:1" if started is not None else "",
            False,
            False,
            True,
        ]
        yield row, i % EVENTS_EVERY == 0


def event_rows(job_id: Any, owner: int, created: datetime) -> list[list[Any]]:
    kinds = ["created", "started", "progress", "progress", "completed"][:EVENTS_PER_JOB]
    return [[kind, job_id, owner, None, {"n": k}, created + timedelta(seconds=k)] for k, kind in enumerate(kinds)]


# --- loading --------------------------------------------------------------------------------


def prepare_database(backend: str, reuse: bool) -> None:
    if backend == "pg":
        import psycopg

        if not reuse:
            with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
                conn.execute(f"CREATE DATABASE {PG_DB}")
        os.environ["DATABASE_URL"] = f"{PG_URL}/{PG_DB}"
    else:
        if not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{SQLITE_PATH}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")


def drop_database(backend: str) -> None:
    if backend == "pg":
        import psycopg

        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)


def load(backend: str, rows: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    User = get_user_model()  # noqa: N806
    User.objects.bulk_create(
        [User(username=f"bench-user-{i:02d}", is_staff=(i == 0), is_superuser=(i == 0)) for i in range(USERS)]
    )
    user_ids = list(User.objects.order_by("pk").values_list("pk", flat=True))
    now = datetime.now(UTC)
    sample: dict[str, Any] = {}
    started = time.perf_counter()
    if backend == "pg":
        pg = connection.connection
        with pg.cursor() as cur:
            events: list[list[Any]] = []
            with cur.copy(f"COPY jobs_job ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row, with_events in job_rows(rows, user_ids, now):
                    if with_events:
                        events.extend(event_rows(row[0], row[6], row[7]))
                        sample = {"id": row[0], "user": row[6], "params": row[2]}
                    row[2], row[16] = json.dumps(row[2]), json.dumps(row[16])
                    copy.write_row(row)
            with cur.copy(f"COPY jobs_jobevent ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for event in events:
                    event[4] = json.dumps(event[4])
                    copy.write_row(event)
        connection.commit() if not connection.get_autocommit() else None
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE jobs_job")
            cur.execute("VACUUM ANALYZE jobs_jobevent")
    else:
        raw = connection.connection

        def iso(value: Any) -> Any:
            return value.replace(tzinfo=None).isoformat(sep=" ") if isinstance(value, datetime) else value

        placeholders = ", ".join("?" * len(COLUMNS))
        # Build the indexes once after the load instead of maintaining a dozen per insert
        # (1,064 s → a few minutes for a million rows).
        indexes = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('jobs_job', 'jobs_jobevent')"
            " AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            raw.execute(f'DROP INDEX "{name}"')
        raw.execute("PRAGMA synchronous = OFF")
        batch: list[list[Any]] = []
        events = []
        for row, with_events in job_rows(rows, user_ids, now):
            if with_events:
                events.extend(event_rows(row[0], row[6], row[7]))
                sample = {"id": row[0], "user": row[6], "params": row[2]}
            row[0] = row[0].hex
            row[2], row[16] = json.dumps(row[2]), json.dumps(row[16])
            batch.append([iso(v) for v in row])
            if len(batch) >= 50_000:
                raw.executemany(f"INSERT INTO jobs_job ({', '.join(COLUMNS)}) VALUES ({placeholders})", batch)
                batch = []
        if batch:
            raw.executemany(f"INSERT INTO jobs_job ({', '.join(COLUMNS)}) VALUES ({placeholders})", batch)
        raw.executemany(
            f"INSERT INTO jobs_jobevent ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            [[e[0], e[1].hex, e[2], e[3], json.dumps(e[4]), iso(e[5])] for e in events],
        )
        raw.commit()
        for _name, sql in indexes:
            raw.execute(sql)
        raw.commit()
        raw.execute("PRAGMA synchronous = NORMAL")
        raw.execute("ANALYZE")
    print(f"  loaded {rows:,} jobs and {len(events):,} events in {time.perf_counter() - started:.1f} s", flush=True)
    sample["now"] = now
    return sample


# --- timing ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def reused_sample() -> dict[str, Any]:
    from django.db.models import Max

    from jobs.models import Job, JobEvent

    event = JobEvent.objects.select_related("job").order_by("-id").first()
    if event is None or event.job is None:
        raise SystemExit("No scratch data to reuse: run once with --keep first.")
    job = event.job
    print(f"  reusing {Job.objects.count():,} jobs", flush=True)
    now = Job.objects.aggregate(m=Max("created_at"))["m"]
    return {"id": job.pk, "user": job.user_id, "params": job.params, "now": now}


def run(backend: str, rows: int, repeat: int, keep: bool, reuse: bool, only: list[str], gc_freeze: bool) -> None:
    prepare_database(backend, reuse)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # Throttle history in memory, as it would be in Redis: the benchmark measures the API,
    # not the database cache that the embedded mode falls back to.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    sample = reused_sample() if reuse else load(backend, rows)

    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    User = get_user_model()  # noqa: N806
    staff = User.objects.get(username="bench-user-00")
    owner = User.objects.get(pk=sample["user"])
    as_staff, as_owner = APIClient(), APIClient()
    as_staff.force_authenticate(staff)
    as_owner.force_authenticate(owner)
    job_id = sample["id"]
    items, source = sample["params"]["items"], sample["params"]["source"]
    day = (sample["now"] - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    after, before = (d.isoformat().replace("+", "%2B") for d in (day, day + timedelta(days=1)))
    window = f"created_after={after}&created_before={before}"

    cases = [
        ("list: first page (staff, all jobs)", as_staff, "/api/jobs/"),
        ("list: first page (a user, own jobs)", as_owner, "/api/jobs/"),
        ("filter: status=failed", as_staff, "/api/jobs/?status=failed"),
        ("filter: status=running&status=paused", as_staff, "/api/jobs/?status=running&status=paused"),
        ("filter: type=type-07", as_staff, "/api/jobs/?type=type-07"),
        ("filter: queue=batch", as_staff, "/api/jobs/?queue=batch"),
        ("filter: user=<id>", as_staff, f"/api/jobs/?user={owner.pk}"),
        ("filter: one day (created_after/before)", as_staff, f"/api/jobs/?{window}"),
        ("filter: status=failed&type=type-03", as_staff, "/api/jobs/?status=failed&type=type-03"),
        ("search: username prefix", as_staff, "/api/jobs/?search=bench-user-4"),
        ("search: username middle", as_staff, "/api/jobs/?search=ch-user-17"),
        ("search: type", as_staff, "/api/jobs/?search=type-12"),
        ("search: middle of a type (common)", as_staff, "/api/jobs/?search=pe-01"),
        ("search: job id", as_staff, f"/api/jobs/?search={job_id}"),
        ("search: middle of a job id", as_staff, f"/api/jobs/?search={str(job_id)[9:23]}"),
        ("search: a param value (one job)", as_staff, f"/api/jobs/?search={source.rsplit('/', 1)[1]}"),
        ("search: a param value (one type)", as_staff, "/api/jobs/?search=exports/type-07/"),
        ("search: error substring (5%)", as_staff, "/api/jobs/?search=RuntimeError"),
        ("search: error substring (rare)", as_staff, f"/api/jobs/?search=boom%20at%20item%20{items}"),
        ("search: nothing matches", as_staff, "/api/jobs/?search=no-such-text"),
        ("search: a user, own jobs", as_owner, "/api/jobs/?search=exports/type-0"),
        ("params.items=<n>", as_staff, f"/api/jobs/?params.items={items}"),
        ("params.source=<one job's>", as_staff, f"/api/jobs/?params.source={quote(source)}"),
        ("params.items=<n>&status=failed", as_staff, f"/api/jobs/?params.items={items}&status=failed"),
        ("params.items=<n> (a user, own jobs)", as_owner, f"/api/jobs/?params.items={items}"),
        ("params.items=-1 (nothing matches)", as_staff, "/api/jobs/?params.items=-1"),
        ("page 200 (offset 9,950)", as_staff, "/api/jobs/?page=200"),
        ("page 2000 (offset 99,950)", as_staff, "/api/jobs/?page=2000"),
        ("page_size=500", as_staff, "/api/jobs/?page_size=500"),
        ("ordering=-duration", as_staff, "/api/jobs/?ordering=-duration"),
        ("ordering=duration", as_staff, "/api/jobs/?ordering=duration"),
        ("ordering=-finished_at", as_staff, "/api/jobs/?ordering=-finished_at"),
        ("ordering=priority", as_staff, "/api/jobs/?ordering=priority"),
        ("ordering=status", as_staff, "/api/jobs/?ordering=status"),
        ("status=failed&ordering=-duration", as_staff, "/api/jobs/?status=failed&ordering=-duration"),
        ("detail", as_staff, f"/api/jobs/{job_id}/"),
        ("events page", as_staff, f"/api/jobs/{job_id}/events/"),
        ("queues", as_staff, "/api/queues/"),
    ]
    if only:
        # The first case stays: it is the baseline of the ratios.
        cases = cases[:1] + [case for case in cases[1:] if any(word in case[0] for word in only)]
    from django.db import connection

    # Time spent in the database driver (on SQLite part of the work happens while rows are
    # fetched, outside this figure).
    db_time = [0.0]

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            db_time[0] += time.perf_counter() - t0

    if gc_freeze:
        # What a server does after start-up with gc.freeze(): the objects of the loaded
        # application leave the collector's generations, so a full collection (every ~16
        # requests of 500 rows) no longer walks them (a 80-90 ms pause without it).
        for _label, client, url in cases:
            client.get(url)
        gc.freeze()
    # Every p95 also as a ratio to the first case's (the unfiltered first page), timed in the same
    # run: on a busy machine the absolute figures move together, the ratios much less.
    baseline_p95: float | None = None
    print(f"\n  {'request':<44} {'p50 ms':>8} {'p95 ms':>8} {'db p50':>8} {'db p95':>8} {'p95 ×':>6}  rows")
    for label, client, url in cases:
        response = client.get(url)  # warm-up, and a check that it works at all
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        body = response.json()
        shown = len(body["results"]) if isinstance(body, dict) and "results" in body else "-"
        timings, db_timings = [], []
        with connection.execute_wrapper(timed):
            for _ in range(repeat):
                db_time[0] = 0.0
                t0 = time.perf_counter()
                client.get(url)
                timings.append((time.perf_counter() - t0) * 1000)
                db_timings.append(db_time[0] * 1000)
        p95 = percentile(timings, 0.95)
        baseline_p95 = baseline_p95 or p95
        print(
            f"  {label:<44} {statistics.median(timings):8.1f} {p95:8.1f}"
            f" {statistics.median(db_timings):8.1f} {percentile(db_timings, 0.95):8.1f} {p95 / baseline_p95:6.2f}"
            f"  {shown!s:>4}",
            flush=True,
        )

    connection.close()
    if not (keep or reuse):  # a --reuse run leaves the data for the next one
        drop_database(backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["pg", "sqlite", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument(
        "--reuse", action="store_true", help="time against the databases a --keep run left (and keep them)"
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after a warm-up, as a server may do after start-up"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="WORDS", help="time only the requests whose label contains WORDS"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.backend == "both":
        for backend in ("pg", "sqlite"):
            cmd = [sys.executable, __file__, "--rows", str(args.rows), "--backend", backend]
            cmd += ["--repeat", str(args.repeat)] + (["--keep"] if args.keep else [])
            cmd += ["--reuse"] if args.reuse else []
            cmd += [f"--only={words}" for words in args.only]
            cmd += ["--gc-freeze"] if args.gc_freeze else []
            subprocess.run(cmd, check=True)
        return
    name = {"pg": "PostgreSQL", "sqlite": "SQLite"}[args.backend]
    print(f"{name}: {args.rows:,} jobs, {args.repeat} timed requests each", flush=True)
    run(args.backend, args.rows, args.repeat, args.keep, args.reuse, args.only, args.gc_freeze)


if __name__ == "__main__":
    main()
