"""The cost of ``ctx.progress``: a million calls in a tight loop, the rows they write, and
what one written report costs.

Claims a job on a scratch SQLite database (a temporary folder, removed afterwards) and
drives its ``JobContext`` as a job function would, with the default coalescing interval
(``JOBADMIN_PROGRESS_INTERVAL``, 0.5 s). The overhead is the loop's time minus the time
of the same loop calling an empty method.

    .venv/bin/python -m benchmarks.progress_overhead [--calls 1000000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="then report in a loop for this long")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobadmin-bench-") as data_dir:
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        os.environ.update(DJANGO_SETTINGS_MODULE="benchmarks.settings", JOBADMIN_DATA_DIR=data_dir, LOG_LEVEL="WARNING")
        run(args.calls, args.seconds)


class _Empty:
    def progress(self, processed: int | None = None, total: int | None = None, errors: int | None = None) -> None:
        return None


def run(calls: int, seconds: float) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from jobs import services
    from jobs.context import JobContext
    from jobs.models import EventKind, JobEvent

    services.job_enqueue(job_type="bench-noop")
    job = services.job_claim(queue="default", worker="bench:0")
    assert job is not None
    ctx = JobContext(job, worker="bench:0")
    ctx.step(0)

    empty = _Empty()
    started = time.perf_counter()
    for i in range(calls):
        empty.progress(processed=i, total=calls)
    baseline = time.perf_counter() - started

    events = JobEvent.objects.filter(job=job, kind=EventKind.PROGRESS)
    before = events.count()
    started = time.perf_counter()
    for i in range(calls):
        ctx.progress(processed=i, total=calls)
    elapsed = time.perf_counter() - started
    rows = events.count() - before

    overhead = elapsed - baseline
    print(f"{calls:,} ctx.progress calls: {elapsed:.3f} s (an empty method call loop: {baseline:.3f} s)")
    print(f"  overhead {overhead:.3f} s, {overhead / calls * 1e9:.0f} ns per call")
    print(
        f"  rows written: {rows} progress events (and as many job UPDATEs), "
        f"{rows / elapsed:.1f} per second at JOBADMIN_PROGRESS_INTERVAL={settings.JOBADMIN_PROGRESS_INTERVAL}"
    )

    # A loop that keeps reporting for a few seconds: the write rate coalescing allows.
    before = events.count()
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        n += 1
        ctx.progress(processed=n, total=n + 1)
    elapsed = time.perf_counter() - started
    rows = events.count() - before
    print(f"{n:,} calls over {elapsed:.1f} s: {rows} progress events written, {rows / elapsed:.1f} per second")

    # What one of those writes costs: the report itself (job row and event, one transaction).
    writes = 2000
    started = time.perf_counter()
    for i in range(writes):
        assert services.job_report(
            job_id=job.pk, worker="bench:0", attempt=job.attempts, values={"processed_items": i, "progress": i / 20}
        )
    elapsed = time.perf_counter() - started
    print(f"{writes:,} written reports (services.job_report): {elapsed / writes * 1e3:.3f} ms each")


if __name__ == "__main__":
    main()
