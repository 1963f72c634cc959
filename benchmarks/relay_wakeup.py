"""The relay's wake-up on PostgreSQL: a 10 ms poll against LISTEN/NOTIFY, in one run.

    createdb -h 127.0.0.1 -U postgres jobadmin_relaybench        # once: the benchmark migrates it
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jobadmin_relaybench REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m benchmarks.relay_wakeup [--rounds 2 --idle 20 --seconds 10 --rates 100,500]

For each mode (``poll``: ``JOBADMIN_RELAY_LISTEN=false``, the relay reads the log every
``JOBADMIN_RELAY_POLL`` = 10 ms; ``listen``: it reads when a notification comes, and every
``JOBADMIN_RELAY_SAFETY_POLL`` = 1 s), alternately ``--rounds`` times, it starts a real
``manage.py monitor`` (which runs the relay with Redis) and measures:

- idle: the CPU of the monitor process and of its PostgreSQL sessions over ``--idle``
  seconds, nothing being written;
- latency, at each of ``--rates``: a writer process (``benchmarks.ws_latency --role writer``:
  the engine's own ``job_report``, one transaction per report) writes that many events/s
  over ``--jobs`` jobs for ``--seconds``; this process listens to the layer group the relay
  publishes to and takes, per event, the time from the writer's COMMIT to the arrival of
  the relay's message; and the monitor's CPU meanwhile.

Then the writers' side of NOTIFY: the same writer as fast as it can (``--burst`` events/s
asked) with the trigger enabled and disabled, no monitor running.

A benchmark, not a test: it prints figures and never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.ws_latency import BENCH_WORKER, ROOT, ms, pct

MODES = {"poll": "false", "listen": "true"}


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="relaybench-"))
        self.env = dict(os.environ)
        tag = f"relaybench-{os.getpid()}"
        self.env.update(
            DJANGO_SETTINGS_MODULE="jobadmin.settings",
            JOBADMIN_DATA_DIR=str(self.tmp),
            REDIS_PREFIX=tag,
            Q_CLUSTER_NAME=tag,
            PYTHONUNBUFFERED="1",
        )
        os.environ.update(self.env)
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the parent reads the database between phases only

    def prepare(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connection

        if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
            raise SystemExit("this benchmark compares PostgreSQL's LISTEN/NOTIFY: set DATABASE_URL and REDIS_URL")
        self.owner, _ = get_user_model().objects.get_or_create(username="bench-owner")
        connection.close()

    def fresh_jobs(self) -> Path:
        """Running jobs of the benchmark's worker (a writer ends each with ``completed``)."""
        from django.db import connection
        from django.utils import timezone

        from jobs.models import Job

        now = timezone.now()
        jobs = [
            Job(type="demo", status="running", user=self.owner, queue="default", worker=BENCH_WORKER, attempts=1,
                created_at=now, updated_at=now)
            for _ in range(self.args.jobs)
        ]  # fmt: skip
        Job.objects.bulk_create(jobs)
        connection.close()
        jobs_file = self.tmp / "jobs.json"
        jobs_file.write_text(json.dumps([str(job.pk) for job in jobs]))
        return jobs_file

    def backends_of(self, pid: int) -> list[int]:
        """The PostgreSQL sessions a process holds (same machine): by its local TCP ports."""
        import psutil
        from django.db import connection

        ports = [c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", [ports])
            found = [row[0] for row in cursor.fetchall()]
        connection.close()
        return found

    def start_monitor(self, mode: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"monitor-{mode}-{time.time():.0f}.log"
        env = {**self.env, "JOBADMIN_RELAY_LISTEN": MODES[mode]}
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "monitor"], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while b"monitor: running at" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the monitor did not start:\n{log.read_text()}")
            time.sleep(0.1)
        return proc

    def write(self, *, rate_per_job: float, seconds: float) -> tuple[dict[str, float], dict[str, Any]]:
        """The writer's events: id -> commit time, and its summary line."""
        out = self.tmp / "written.txt"
        jobs_file = self.fresh_jobs()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.ws_latency", "--role", "writer", "--jobs-file", str(jobs_file),
             "--rate", str(rate_per_job), "--seconds", str(seconds), "--out", str(out)],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        committed = {line.split()[0]: float(line.split()[1]) for line in out.read_text().splitlines()}
        return committed, json.loads(done.stdout.strip().splitlines()[-1])

    async def latency(self, rate: float, monitor: int) -> dict[str, Any]:
        from channels.layers import get_channel_layer

        from live.relay import EVENTS_GROUP, EVENTS_TYPE

        layer = get_channel_layer()
        assert layer is not None
        channel = await layer.new_channel()
        await layer.group_add(EVENTS_GROUP, channel)
        arrived: dict[str, float] = {}

        async def receive() -> None:
            while True:
                message = await layer.receive(channel)
                now = time.time()
                if message.get("type") == EVENTS_TYPE:
                    for event in message["events"]:
                        arrived.setdefault(str(event["id"]), now)

        reader = asyncio.create_task(receive())
        await asyncio.sleep(1.0)  # the subscription is effective
        cpu, started = cpu_seconds([monitor]), time.monotonic()
        per_job = rate / self.args.jobs
        committed, _ = await asyncio.to_thread(self.write, rate_per_job=per_job, seconds=self.args.seconds)
        busy = (cpu_seconds([monitor]) - cpu) / (time.monotonic() - started)
        await asyncio.sleep(2.0)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await layer.group_discard(EVENTS_GROUP, channel)
        lags = [arrived[i] - at for i, at in committed.items() if i in arrived]
        return {"written": len(committed), "arrived": len(lags), "lags": lags, "busy": busy}

    def round(self, mode: str) -> dict[str, Any]:
        proc = self.start_monitor(mode)
        try:
            time.sleep(3.0)  # past start-up (first samples, the relay's first read)
            pids = [proc.pid, *self.backends_of(proc.pid)]
            before, started = (cpu_seconds([proc.pid]), cpu_seconds(pids[1:])), time.monotonic()
            time.sleep(self.args.idle)
            wall = time.monotonic() - started
            idle_monitor = (cpu_seconds([proc.pid]) - before[0]) / wall
            idle_backends = (cpu_seconds(pids[1:]) - before[1]) / wall
            loads = {rate: asyncio.run(self.latency(rate, proc.pid)) for rate in self.args.rates}
            sessions = len(pids) - 1
            return {
                "mode": mode,
                "monitor": idle_monitor,
                "backends": idle_backends,
                "sessions": sessions,
                "loads": loads,
            }
        finally:
            proc.terminate()
            proc.wait(30)

    def writers_side(self) -> list[tuple[str, float]]:
        from django.db import connection

        from jobs.models import JobEvent

        table = JobEvent._meta.db_table
        figures = []
        for trigger in ("ENABLE", "DISABLE") * self.args.rounds:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} {trigger} TRIGGER jobadmin_event_notify")
            connection.close()
            _, summary = self.write(rate_per_job=self.args.burst / self.args.jobs, seconds=2.0)
            figures.append((trigger.lower() + "d", summary["written"] / summary["seconds"]))
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER jobadmin_event_notify")
        connection.close()
        return figures

    def cleanup(self) -> None:
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(match=f"*{self.env['REDIS_PREFIX']}*", count=1000):
            client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode, alternating")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured per round")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of writing per round")
    parser.add_argument("--rates", default="100,500", help="events per second written, one phase each")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--burst", type=float, default=5000.0, help="events/s asked of the writer, trigger on/off")
    args = parser.parse_args()
    args.rates = [float(rate) for rate in args.rates.split(",")]
    # channels-redis logs the cancelled receive of the benchmark's own listener at its end.
    logging.getLogger("channels_redis").setLevel(logging.CRITICAL)
    bench = Bench(args)
    try:
        bench.prepare()
        print(f"load average before: {os.getloadavg()[0]:.2f}; {args.seconds:g} s of writing per rate and round")
        print(
            "mode   | idle: monitor, its sessions (% of a core) "
            "| rate: commit -> published p50 / p99 / max, arrived, monitor CPU"
        )
        for mode in list(MODES) * args.rounds:
            r = bench.round(mode)
            loads = "; ".join(
                f"{rate:g}/s: {ms(pct(x['lags'], 0.5))} / {ms(pct(x['lags'], 0.99))} / {ms(max(x['lags'], default=0))},"
                f" {x['arrived']} of {x['written']}, {100 * x['busy']:.1f} %"
                for rate, x in r["loads"].items()
            )
            idle = f"{100 * r['monitor']:5.1f} %, {100 * r['backends']:4.1f} % ({r['sessions']} sessions)"
            print(f"{mode:6} | {idle} | {loads}", flush=True)
        print("writer, as fast as it can (no monitor): events/s with the NOTIFY trigger enabled / disabled")
        for state, rate in bench.writers_side():
            print(f"  trigger {state}: {rate:.0f} events/s", flush=True)
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
