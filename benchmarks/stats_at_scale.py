"""How fast statistics, analytics and the other monitoring endpoints answer with a million jobs.

Uses the same history as ``benchmarks/api_at_scale.py`` (its generator: N jobs over 30 days,
20 types, 50 users, 3 queues, ~5% failed), loaded into scratch databases of its own
(PostgreSQL ``jobadmin_bench_stats``, SQLite /tmp/jobadmin_bench_stats.sqlite3). Times each
request through the whole Django/DRF stack (in-process client) and prints p50/p95; then
runs the real ``manage.py monitor`` against the same database for a while and reports the
CPU it used.

    .venv/bin/python benchmarks/stats_at_scale.py                       # both backends, 1,000,000 jobs
    .venv/bin/python benchmarks/stats_at_scale.py --backend pg --rows 200000 --repeat 20 --monitor-seconds 30

Not a test: it prints figures and never fails because the machine was slow.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import api_at_scale as base  # noqa: E402

base.PG_DB = "jobadmin_bench_stats"
base.SQLITE_PATH = Path("/tmp/jobadmin_bench_stats.sqlite3")


def monitor_cpu(seconds: float) -> tuple[float, int]:
    """Run ``manage.py monitor`` for ``seconds``; return its CPU use in % of one core and samples taken."""
    import psutil
    from django.db import connection

    from monitoring.models import MetricSample

    before = MetricSample.objects.count()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jobadmin.settings", "JOBADMIN_DATA_DIR": "/tmp/jobadmin_bench_data"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "monitor"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        handle = psutil.Process(proc.pid)
        time.sleep(5)  # start-up (imports, lock, first sample) is not "idle"
        cpu0 = sum(handle.cpu_times()[:2])
        t0 = time.monotonic()
        time.sleep(seconds)
        used = sum(handle.cpu_times()[:2]) - cpu0
        elapsed = time.monotonic() - t0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    connection.close()
    return 100 * used / elapsed, MetricSample.objects.count() - before


def run(backend: str, rows: int, repeat: int, keep: bool, reuse: bool, monitor_seconds: float, only: str) -> None:
    base.prepare_database(backend, reuse)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)  # for the monitor process (its DatabaseCache)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.ALLOWED_HOSTS = ["testserver"]
    if reuse:
        base.reused_sample()
    else:
        base.load(backend, rows)
    if backend == "pg" and not reuse:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from monitoring.metrics import metrics_sample
    from monitoring.rollup import rollup_fold, rollup_rebuild

    t0 = time.perf_counter()
    buckets = rollup_rebuild()
    print(f"  statistics buckets rebuilt: {buckets:,} cohort rows in {time.perf_counter() - t0:.1f} s")
    if backend == "pg":
        # As after the monitor's first fold into empty tables (a --reuse run's rebuild leaves the
        # previous rows dead until autovacuum): compact tables, with the planner's statistics.
        from django.db import connection

        from monitoring.rollup import SPECS

        with connection.cursor() as cur:
            for spec in SPECS:
                cur.execute(f"VACUUM FULL ANALYZE {spec.model._meta.db_table}")
    t0 = time.perf_counter()
    rollup_fold()
    print(f"  one fold with nothing changed: {1000 * (time.perf_counter() - t0):.1f} ms", flush=True)

    for _ in range(30):  # some samples so that /api/metrics/ has something to average
        metrics_sample()
    staff = get_user_model().objects.get(username="bench-user-00")
    client = APIClient()
    client.force_authenticate(staff)
    cases = [(f"/api/stats/?range={r}", f"stats range={r}") for r in ("1h", "1d", "7d", "30d", "all")]
    for path in ("types", "users", "errors", "peak-hours"):
        cases += [
            (f"/api/analytics/{path}/", f"analytics/{path} (7d)"),
            (f"/api/analytics/{path}/?range=all", f"analytics/{path} all"),
        ]
    for metric in ("throughput", "success_rate", "duration", "queue_wait"):
        cases.append((f"/api/analytics/trends/?metric={metric}&interval=1h&range=1d", f"trends {metric} 1h/1d"))
    cases += [
        ("/api/analytics/trends/?metric=throughput&interval=1d&range=30d", "trends throughput 1d/30d"),
        ("/api/analytics/trends/?metric=duration&interval=5m&range=1d", "trends duration 5m/1d"),
        ("/api/metrics/?interval=1m&range=1h", "metrics 1m/1h"),
        ("/api/health/", "health (staff)"),
        ("/metrics", "prometheus /metrics"),
    ]
    print(f"\n  {'request':<36} {'p50 ms':>8} {'p95 ms':>8}")
    for url, label in cases:
        if only not in label:
            continue
        response = client.get(url, REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        timings = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get(url, REMOTE_ADDR="127.0.0.1")
            timings.append((time.perf_counter() - t0) * 1000)
        print(f"  {label:<36} {statistics.median(timings):8.1f} {base.percentile(timings, 0.95):8.1f}", flush=True)
    if monitor_seconds > 0:
        # Idle: the same history, but nothing queued or running (the generator leaves the newest
        # 0.2% live with stale heartbeats, which the monitor would otherwise settle as stalled).
        from jobs.models import Job

        Job.objects.filter(status__in=["queued", "running", "paused"]).update(status="cancelled", heartbeat_at=None)
        rollup_rebuild()
        cpu, samples = monitor_cpu(monitor_seconds)
        print(f"\n  monitor loop, idle, {monitor_seconds:.0f} s: {cpu:.2f}% of one core ({samples} samples taken)")
    from django.db import connection

    connection.close()
    if not keep:
        base.drop_database(backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["pg", "sqlite", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--monitor-seconds", type=float, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--reuse", action="store_true", help="time against the databases a --keep run left")
    parser.add_argument("--only", default="", help="time only the requests whose label contains this text")
    args = parser.parse_args()
    if args.backend == "both":
        for backend in ("pg", "sqlite"):
            cmd = [
                sys.executable,
                __file__,
                "--rows",
                str(args.rows),
                "--backend",
                backend,
                "--repeat",
                str(args.repeat),
            ]
            cmd += ["--monitor-seconds", str(args.monitor_seconds)] + (["--keep"] if args.keep else [])
            cmd += (["--reuse"] if args.reuse else []) + ["--only", args.only]
            subprocess.run(cmd, check=True)
        return
    name = {"pg": "PostgreSQL", "sqlite": "SQLite"}[args.backend]
    print(f"{name}: {args.rows:,} jobs, {args.repeat} timed requests each", flush=True)
    run(args.backend, args.rows, args.repeat, args.keep or args.reuse, args.reuse, args.monitor_seconds, args.only)


if __name__ == "__main__":
    main()
