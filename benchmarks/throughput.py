"""Throughput: N no-op jobs through JobAdmin against N bare ``async_task`` calls.

Both run in the same run, on the same broker and database, through one real ``qcluster``
(2 workers by default), each timed from its first enqueue until all N are done. It runs
on the embedded default (a scratch SQLite file in WAL mode, the ORM broker) and, when
``DATABASE_URL`` and ``REDIS_URL`` are set, on PostgreSQL (a scratch database it creates
and drops) with the Redis broker (its keys are deleted afterwards).

    .venv/bin/python -m benchmarks.throughput                      # SQLite + ORM broker
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python -m benchmarks.throughput                  # and PostgreSQL + Redis

Options: ``--jobs 2000 --workers 2 --rounds 1 --only sqlite|services --mode jobs|django.tasks``.
``--mode django.tasks`` measures N ``.enqueue()`` calls of a no-op ``@task`` through
``jobs.django_tasks.JobAdminBackend`` against the N bare ``async_task`` calls instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.scratch import each_configuration

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.8


# --- The parent: scratch databases and clean-up ---------------------------------------------


def _run_child(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--child", "--jobs", str(args.jobs)]
    cmd += ["--workers", str(args.workers), "--rounds", str(args.rounds), "--mode", args.mode]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {result['jobs']} no-op jobs, {result['workers']} workers, broker {result['broker']}")
    if result.get("mode") == "django.tasks":
        for n, r in enumerate(result["rounds"], start=1):
            bare, ours = r["bare"], r["django_tasks"]
            ratio = ours["rate"] / bare["rate"]
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            print(
                f"  round {n}: bare async_task {bare['rate']:7.1f} jobs/s (enqueued in {bare['enqueue_s']:.1f} s)   "
                f"django.tasks .enqueue() {ours['rate']:7.1f} jobs/s (enqueued in {ours['enqueue_s']:.1f} s)   "
                f"ratio {ratio:.2f} ({verdict} the {TARGET_RATIO} target)"
            )
        return
    for n, r in enumerate(result["rounds"], start=1):
        bare, ours = r["bare"], r["jobadmin"]
        ratio = ours["rate"] / bare["rate"]
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        print(
            f"  round {n}: bare async_task {bare['rate']:7.1f} jobs/s (enqueued in {bare['enqueue_s']:.1f} s)   "
            f"JobAdmin {ours['rate']:7.1f} jobs/s (enqueued in {ours['enqueue_s']:.1f} s)   "
            f"ratio {ratio:.2f} ({verdict} the {TARGET_RATIO} target)"
        )
        drain = r["drain"]["rate"]
        print(
            f"           workers alone (jobs enqueued beforehand into a paused queue, then resumed): "
            f"JobAdmin {drain:7.1f} jobs/s, {drain / bare['rate']:.2f} of bare async_task end to end"
        )
    print(
        "  JobAdmin statements of one job (enqueue and a wake-up's first claim commit once each; a draining"
        f" worker's run commits with its next claim): {result['writes_per_job']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=["sqlite", "services"])
    parser.add_argument("--mode", choices=["jobs", "django.tasks"], default="jobs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    each_configuration(args.only, lambda env: _run_child(env, args), report)


# --- The child: one configuration, one cluster, both measurements --------------------------


def child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not settings.REDIS_URL:
        call_command("createcachetable", verbosity=0)

    log = open(Path(settings.JOBADMIN_DATA_DIR) / "qcluster.log", "wb")  # noqa: SIM115 - closed below
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env={**os.environ, "Q_WORKERS": str(args.workers)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _warm_up()
        rounds = []
        for _ in range(args.rounds):
            if args.mode == "django.tasks":
                rounds.append({"bare": measure_bare(args.jobs), "django_tasks": measure_django_tasks(args.jobs)})
                continue
            bare = measure_bare(args.jobs)
            jobadmin = measure_jobadmin(args.jobs)
            drain = measure_jobadmin_drain(args.jobs)
            rounds.append({"bare": bare, "jobadmin": jobadmin, "drain": drain})
        result = {
            "jobs": args.jobs,
            "workers": args.workers,
            "broker": "redis" if settings.REDIS_URL else "orm",
            "rounds": rounds,
            "mode": args.mode,
        }
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(cluster.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cluster.wait()
        log.close()
    # With the cluster stopped, so that no worker takes the jobs it counts.
    if args.mode == "jobs":
        result["writes_per_job"] = count_writes_per_job()
    print(json.dumps(result))


def _all_completed(jobs: Any, what: str) -> None:
    """Every job of the measurement completed; else the first few, each with its event log."""
    from jobs.models import JobStatus

    left = list(jobs.exclude(status=JobStatus.COMPLETED)[:5])

    def said(event: Any) -> str:
        snap = event.payload.get("job", {})
        at = f"{event.created_at:%H:%M:%S.%f}"
        return f"{event.kind}@{at} ({snap.get('status')} {snap.get('worker')} #{snap.get('attempts')})"

    lines = [
        f"{job.pk} {job.status} {job.error!r} worker {job.worker} #{job.attempts} updated {job.updated_at:%H:%M:%S.%f}"
        f" heartbeat {job.heartbeat_at}: " + ", ".join(said(e) for e in job.events.order_by("id"))
        for job in left
    ]
    assert not left, f"{what} did not complete ({jobs.count()} in all):\n" + "\n".join(lines)


def _wait(done: Any, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def _warm_up() -> None:
    """Start-up, imports and connections are paid before either measurement."""
    from django_q.models import Success
    from django_q.tasks import async_task

    from jobs import services
    from jobs.models import Job, JobStatus

    async_task("benchmarks.jobs.noop_task", group="warm-up")
    _wait(lambda: Success.objects.filter(group="warm-up").exists(), "the cluster to start", timeout=60)
    job = services.job_enqueue(job_type="bench-noop")
    _wait(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).exists(), "the warm-up job")


def measure_bare(n: int) -> dict[str, float]:
    from django_q.models import Success
    from django_q.tasks import async_task

    group = f"bare-{time.monotonic_ns()}"
    started = time.perf_counter()
    for _ in range(n):
        async_task("benchmarks.jobs.noop_task", group=group)
    enqueued = time.perf_counter() - started
    _wait(lambda: Success.objects.filter(group=group).count() >= n, "the bare tasks")
    return {"rate": n / (time.perf_counter() - started), "enqueue_s": enqueued}


def measure_jobadmin(n: int) -> dict[str, float]:
    from jobs import services
    from jobs.models import Job, JobStatus

    ours = Job.objects.filter(type="bench-noop")
    before = ours.filter(status=JobStatus.COMPLETED).count()
    started = time.perf_counter()
    for _ in range(n):
        services.job_enqueue(job_type="bench-noop")
    enqueued = time.perf_counter() - started
    _wait(lambda: ours.filter(status=JobStatus.COMPLETED).count() - before >= n, "the JobAdmin jobs")
    elapsed = time.perf_counter() - started
    _all_completed(ours, "benchmark jobs")
    return {"rate": n / elapsed, "enqueue_s": enqueued}


def measure_django_tasks(n: int) -> dict[str, float]:
    """N ``.enqueue()`` calls of a no-op ``@task`` through ``JobAdminBackend``, until all are done."""
    from benchmarks.jobs import noop_django_task
    from jobs.models import Job, JobStatus

    ours = Job.objects.filter(type="task:benchmarks.jobs.noop_django_task")
    # Its job type registered, its first enqueue paid. This warm-up's own job, not any: from
    # the second round on, an earlier round's completed job would let it count among the N.
    warm_up = noop_django_task.enqueue()
    _wait(lambda: ours.filter(pk=warm_up.id, status=JobStatus.COMPLETED).exists(), "the warm-up task")
    before = ours.filter(status=JobStatus.COMPLETED).count()
    started = time.perf_counter()
    for _ in range(n):
        noop_django_task.enqueue()
    enqueued = time.perf_counter() - started
    _wait(lambda: ours.filter(status=JobStatus.COMPLETED).count() - before >= n, "the django.tasks jobs")
    elapsed = time.perf_counter() - started
    _all_completed(ours, "benchmark tasks")
    return {"rate": n / elapsed, "enqueue_s": enqueued}


def measure_jobadmin_drain(n: int) -> dict[str, float]:
    """The workers' side alone: n jobs wait in a paused queue, then the queue is resumed."""
    from jobs import services
    from jobs.models import Job, JobStatus

    ours = Job.objects.filter(type="bench-noop")
    before = ours.filter(status=JobStatus.COMPLETED).count()
    services.queue_pause(name="default")
    for _ in range(n):
        services.job_enqueue(job_type="bench-noop")
    started = time.perf_counter()
    services.queue_resume(name="default")
    _wait(lambda: ours.filter(status=JobStatus.COMPLETED).count() - before >= n, "the drained JobAdmin jobs")
    return {"rate": n / (time.perf_counter() - started)}


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def count_writes_per_job() -> dict[str, int]:
    """Statements of one job in-process: its enqueue, the first claim of a wake-up, and
    the run of a draining worker, whose finish claims the next job in the same transaction.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs import services
    from jobs.tasks import execute_job

    counts: dict[str, int] = {}
    with CaptureQueriesContext(connection) as enqueue:
        services.job_enqueue(job_type="bench-noop")
    services.job_enqueue(job_type="bench-noop")
    worker = "bench:0"
    with CaptureQueriesContext(connection) as claim:
        job = services.job_claim(queue="default", worker=worker)
    assert job is not None
    with CaptureQueriesContext(connection) as run:
        following = execute_job(job, worker=worker, claim_next="default")
    assert following is not None
    execute_job(following, worker=worker)
    for name, captured in (("enqueue", enqueue), ("claim", claim), ("run_and_claim_next", run)):
        sqls = [q["sql"].lstrip().upper() for q in captured.captured_queries]
        counts[f"{name}_writes"] = sum(s.startswith(("INSERT", "UPDATE", "DELETE")) for s in sqls)
        counts[f"{name}_statements"] = sum(not s.startswith(_TRANSACTION_CONTROL) for s in sqls)
    return counts


if __name__ == "__main__":
    main()
