"""Continuations: what a checkpoint and a saved cursor cost, and how soon a pause frees its worker.

1. In-process, on a scratch SQLite database: a million iterations of ``ctx.iterate``
   against the bare ``for`` loop over the same range (the difference is the cost of a
   checkpoint with its coalesced progress and cursor), and a million ``ctx.save_cursor``
   calls with an int and with a small dict.
2. A real ``qcluster`` (one worker) on the same scratch database: ``--pauses`` times, a
   running demo job is paused and the time from the pause's commit to the suspension's
   commit (the worker and the slot are free then) is measured; p50 and p99. The worker
   sees the pause at its next control poll (``JOBADMIN_CONTROL_POLL``, printed).
3. The memory of an idle cluster with 4 workers (the old default) and with one worker per
   job the queues allow at once (the new default, 10): the PSS of all its processes.

    .venv/bin/python -m benchmarks.continuations [--iterations 1000000] [--pauses 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--pauses", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobadmin-bench-") as data_dir:
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        os.environ.update(DJANGO_SETTINGS_MODULE="benchmarks.settings", JOBADMIN_DATA_DIR=data_dir, LOG_LEVEL="WARNING")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        checkpoint_costs(args.iterations)
        pause_latency(args.pauses, data_dir)
        for workers in (4, 10):
            cluster_memory(workers, data_dir)


def checkpoint_costs(n: int) -> None:
    from jobs import services
    from jobs.context import JobContext

    services.job_enqueue(job_type="bench-noop")
    job = services.job_claim(queue="default", worker="bench:0")
    assert job is not None
    ctx = JobContext(job, worker="bench:0")
    ctx.step(0)

    started = time.perf_counter()
    for _ in range(n):
        pass
    bare = time.perf_counter() - started

    started = time.perf_counter()
    for _ in ctx.iterate(range(n)):
        pass
    walked = time.perf_counter() - started
    print(f"{n:,} iterations: bare loop {bare:.3f} s, ctx.iterate {walked:.3f} s")
    print(f"  a checkpoint with its cursor: {(walked - bare) / n * 1e9:.0f} ns per item (ratio {walked / bare:.1f})")

    for label, make in (("an int", lambda i: i), ("a dict", lambda i: {"last_id": i, "page": i // 100})):
        started = time.perf_counter()
        for i in range(n):
            ctx.save_cursor(make(i))
        elapsed = time.perf_counter() - started
        print(f"{n:,} ctx.save_cursor calls with {label}: {elapsed:.3f} s, {elapsed / n * 1e9:.0f} ns per call")
    services.job_complete(job_id=job.pk, worker="bench:0", attempt=job.attempts, values=ctx.values())


def pause_latency(pauses: int, data_dir: str) -> None:
    from django.conf import settings

    from jobs import services
    from jobs.models import Job, JobStatus

    env = dict(os.environ, Q_WORKERS="1", Q_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    log = Path(data_dir) / "qcluster.log"
    with log.open("wb") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait(lambda: b"running" in log.read_bytes(), 30, "qcluster did not start")
        samples = []
        for _ in range(pauses):
            job = services.job_enqueue(job_type="demo", params={"items": 100_000, "delay_ms": 2})
            _wait(lambda job=job: Job.objects.get(pk=job.pk).processed_items >= 1, 20, "the job never ran")
            services.job_pause(job=Job.objects.get(pk=job.pk))
            asked = time.perf_counter()
            _wait(lambda job=job: Job.objects.get(pk=job.pk).status == JobStatus.PAUSED, 20, "never paused", 0.002)
            samples.append(time.perf_counter() - asked)
            services.job_cancel(job=Job.objects.get(pk=job.pk))
        samples.sort()
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        print(
            f"pause -> worker free, {pauses} pauses (JOBADMIN_CONTROL_POLL={settings.JOBADMIN_CONTROL_POLL} s): "
            f"p50 {statistics.median(samples) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {samples[-1] * 1e3:.0f} ms"
        )
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)


def cluster_memory(workers: int, data_dir: str) -> None:
    import psutil

    env = dict(os.environ, Q_WORKERS=str(workers), Q_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    log = Path(data_dir) / f"qcluster-{workers}.log"
    with log.open("wb") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait(lambda: b"running" in log.read_bytes(), 60, "qcluster did not start")
        time.sleep(2)
        family = [psutil.Process(cluster.pid), *psutil.Process(cluster.pid).children(recursive=True)]
        pss = sum(p.memory_full_info().pss for p in family)
        print(f"idle cluster, {workers} workers: {len(family)} processes, PSS {pss / 2**20:.0f} MiB")
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)


def _wait(condition: object, timeout: float, message: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(message)
        time.sleep(interval)


if __name__ == "__main__":
    main()
