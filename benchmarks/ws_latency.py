"""Live-update latency with real websocket clients against one daphne process.

    .venv/bin/python -m benchmarks.ws_latency                       # embedded default (scratch SQLite)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jobadmin_wsbench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python -m benchmarks.ws_latency                   # PostgreSQL + Redis pub/sub layer

Scenarios (``--only steady,overload,idle``):

(a) steady — ``--clients`` 1,000 clients, ``--jobs`` 100 running jobs each watched by 10 of
    them, each job reporting ``--rate`` 2 times a second (2,000 frames/s): latency from the
    commit of a change (taken by the writer right after COMMIT) to its arrival at a client,
    frames/s delivered, daphne's memory per connection; and, in the same run, the latency of
    a bare channel-layer ``group_send`` to 10 receivers at the same event rate (the floor).
(b) overload — the same clients, ``--overload`` times the rate, then a final ``completed``
    event per job: the final states and every job's last progress must arrive, p99 stays
    bounded and daphne's memory is sampled every second.
(c) idle — ``--idle`` 5,000 connections held open, then pinged.

The writer is its own process and writes what the engine writes for a progress report
(the job row and its event, one transaction). On the embedded default the relay runs in
daphne; with REDIS_URL it runs in its own process, as ``manage.py monitor`` runs it.
A benchmark, not a test: it prints figures and never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
    import django

    django.setup()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


# --- roles run in child processes ----------------------------------------------------------
def role_writer(args: argparse.Namespace) -> None:
    """Progress reports for every job at ``rate``/s each for ``seconds``, then a final event per job."""
    _setup_django()
    from django.db import connection, transaction
    from django.utils import timezone

    from jobs.events import record_job_event
    from jobs.models import EventKind, Job

    if connection.vendor == "postgresql":
        # The writer stands in for many workers; one session waiting for each fsync could not
        # keep up the rate alone. Latency is still measured from the commit.
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
    job_ids = json.loads(Path(args.jobs_file).read_text())
    jobs = {job.pk: job for job in Job.objects.filter(pk__in=job_ids)}
    order = [jobs[pk] for pk in sorted(jobs, key=str)]
    total = int(len(order) * args.rate * args.seconds)
    interval = 1.0 / (len(order) * args.rate)
    out = open(args.out, "w")  # noqa: SIM115
    start = time.monotonic()
    for n in range(total):
        due = start + n * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        job = order[n % len(order)]
        job.processed_items += 1
        job.progress = min(99.0, job.processed_items / 10)
        job.updated_at = timezone.now()
        with transaction.atomic():
            job.save(update_fields=["processed_items", "progress", "updated_at"])
            event = record_job_event(job=job, kind=EventKind.PROGRESS)
        out.write(f"{event.id} {time.time()} {job.pk} p\n")
    for job in order:
        job.status = "completed"
        job.progress = 100.0
        job.updated_at = timezone.now()
        with transaction.atomic():
            job.save(update_fields=["status", "progress", "updated_at"])
            event = record_job_event(job=job, kind=EventKind.COMPLETED)
        out.write(f"{event.id} {time.time()} {job.pk} f\n")
    out.close()
    print(json.dumps({"written": total + len(order), "seconds": time.monotonic() - start}))


def role_relay(args: argparse.Namespace) -> None:
    _setup_django()
    from monitoring.relay import EventRelay

    relay = EventRelay()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await relay.run(stop)

    asyncio.run(main())


# --- the parent ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="wsbench-"))
        self.env = dict(os.environ)
        self.env.update(
            DJANGO_SETTINGS_MODULE="jobadmin.settings",
            JOBADMIN_DATA_DIR=str(self.tmp),
            REDIS_PREFIX=f"jobadmin-wsbench-{os.getpid()}",
            PYTHONUNBUFFERED="1",
        )
        os.environ.update(self.env)
        # The parent only touches the database between scenarios, never while serving.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        self.redis = bool(os.environ.get("REDIS_URL"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = free_port()

    def spawn(self, *argv: str, log: str) -> subprocess.Popen[bytes]:
        handle = open(self.tmp / log, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def prepare(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        _setup_django()
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        from jobs.models import Job

        users = get_user_model()
        Job.objects.all().delete()
        self.owner, _ = users.objects.get_or_create(username="bench-owner")
        watcher, _ = users.objects.get_or_create(username="bench-watcher", defaults={"is_staff": True})
        self.token = Token.objects.get_or_create(user=watcher)[0].key

    def new_jobs(self, count: int) -> list[str]:
        from django.utils import timezone

        from jobs.models import Job

        now = timezone.now()
        jobs = [
            Job(type="demo", status="running", user=self.owner, queue="default", created_at=now, updated_at=now)
            for _ in range(count)
        ]
        Job.objects.bulk_create(jobs)
        return [str(job.pk) for job in jobs]

    def start_server(self) -> None:
        import psutil

        if self.redis:
            self.spawn("-m", "benchmarks.ws_latency", "--role", "relay", log="relay.log")
        self.daphne = self.spawn(
            "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "jobadmin.asgi:application", log="daphne.log"
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.1)
        self.daphne_ps = psutil.Process(self.daphne.pid)

    def rss(self) -> float:
        return float(self.daphne_ps.memory_info().rss)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.redis:
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            for key in client.scan_iter(match=f"*{self.env['REDIS_PREFIX']}*", count=1000):
                client.delete(key)

    # --- clients ---
    async def open_clients(self, count: int, job_ids: list[str] | None) -> list[Any]:
        from websockets.asyncio.client import connect

        url = f"ws://127.0.0.1:{self.port}/ws/jobs/?token={self.token}"
        clients: list[Any] = [None] * count
        errors = 0
        gate = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            nonlocal errors
            async with gate:
                try:
                    ws = await connect(url, compression=None, ping_interval=None, max_queue=None, open_timeout=60)
                    await asyncio.wait_for(ws.recv(), 30)  # welcome
                    if job_ids:
                        job = job_ids[i % len(job_ids)]
                        await ws.send(json.dumps({"type": "subscribe", "channel": f"job:{job}"}))
                        await asyncio.wait_for(ws.recv(), 30)  # subscribed
                    clients[i] = ws
                except Exception:
                    errors += 1

        await asyncio.gather(*(one(i) for i in range(count)))
        self.connect_errors = errors
        return [c for c in clients if c is not None]

    async def collect(self, clients: list[Any], until: asyncio.Event) -> list[list[tuple[int, float, str]]]:
        received: list[list[tuple[int, float, str]]] = [[] for _ in clients]

        async def reader(i: int, ws: Any) -> None:
            sink = received[i]
            try:
                while True:
                    frame = await ws.recv()
                    now = time.time()
                    message = json.loads(frame)
                    if message.get("type") == "job-update":
                        sink.append((message["event_id"], now, message["job"]["status"]))
            except Exception:
                return

        tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(clients)]
        await until.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return received

    async def floor_probe(self, rate: float, stop: asyncio.Event, watchers: int = 10) -> list[float]:
        """A bare group_send of a small message to a group of ``watchers`` receivers, at the event rate."""
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        assert layer is not None
        channels = [await layer.new_channel() for _ in range(watchers)]
        for channel in channels:
            await layer.group_add("bench.floor", channel)
        latencies: list[float] = []

        async def receive(channel: str) -> None:
            while True:
                message = await layer.receive(channel)
                latencies.append(time.time() - message["t"])

        receivers = [asyncio.create_task(receive(c)) for c in channels]
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            await layer.group_send("bench.floor", {"type": "x", "t": time.time()})
            n += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.5)
        for task in receivers:
            task.cancel()
        for channel in channels:
            await layer.group_discard("bench.floor", channel)
        return latencies

    async def run_load(self, *, rate: float, seconds: float, clients: list[Any], job_ids: list[str]) -> dict[str, Any]:
        jobs_file = self.tmp / "jobs.json"
        jobs_file.write_text(json.dumps(job_ids))
        out = self.tmp / f"writes-{rate}.txt"
        stop = asyncio.Event()
        collecting = asyncio.create_task(self.collect(clients, stop))
        floor_stop = asyncio.Event()
        floor = asyncio.create_task(self.floor_probe(len(job_ids) * rate, floor_stop))
        rss_samples = [self.rss()]
        writer = self.spawn(
            "-m", "benchmarks.ws_latency", "--role", "writer", "--jobs-file", str(jobs_file), "--out", str(out),
            "--rate", str(rate), "--seconds", str(seconds), log=f"writer-{rate}.log",
        )  # fmt: skip
        started = time.monotonic()
        import psutil

        me = psutil.Process()
        me.cpu_percent()
        self.daphne_ps.cpu_percent()
        cpu: dict[str, list[float]] = {"daphne": [], "clients": []}
        daphne_cpu_before = sum(self.daphne_ps.cpu_times()[:2])
        while writer.poll() is None:
            await asyncio.sleep(1)
            rss_samples.append(self.rss())
            cpu["daphne"].append(self.daphne_ps.cpu_percent())
            cpu["clients"].append(me.cpu_percent())
        floor_stop.set()
        await asyncio.sleep(self.args.drain)
        rss_samples.append(self.rss())
        daphne_cpu = sum(self.daphne_ps.cpu_times()[:2]) - daphne_cpu_before
        stop.set()
        received = await collecting
        floor_latencies = await floor
        elapsed = time.monotonic() - started

        writes: dict[int, tuple[float, str, str]] = {}
        for line in out.read_text().split("\n"):
            if line:
                event_id, t, job, kind = line.split()
                writes[int(event_id)] = (float(t), job, kind)
        by_job: dict[str, list[int]] = {}
        for event_id, (_, job, _) in writes.items():
            by_job.setdefault(job, []).append(event_id)
        latencies = []
        finals_ok = last_progress_ok = 0
        delivered = 0
        expected = 0
        for i, frames in enumerate(received):
            job = job_ids[i % len(job_ids)]
            expected += len(by_job.get(job, []))
            got = {event_id for event_id, _, _ in frames}
            delivered += len(frames)
            for event_id, arrived, _ in frames:
                if event_id in writes:
                    latencies.append(arrived - writes[event_id][0])
            ids = sorted(by_job.get(job, []))
            final = [e for e in ids if writes[e][2] == "f"]
            progress = [e for e in ids if writes[e][2] == "p"]
            finals_ok += bool(final) and final[-1] in got
            last_progress_ok += bool(progress) and progress[-1] in got
        writer_stats = json.loads((self.tmp / f"writer-{rate}.log").read_text().strip().splitlines()[-1])
        return {
            "events_written": writer_stats["written"],
            "write_rate": writer_stats["written"] / writer_stats["seconds"],
            "frames_expected": expected,
            "frames_delivered": delivered,
            "frames_per_s": delivered / max(0.001, writer_stats["seconds"]),
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "max": max(latencies) if latencies else float("nan"),
            "finals": f"{finals_ok}/{len(received)}",
            "last_progress": f"{last_progress_ok}/{len(received)}",
            "floor_p50": pct(floor_latencies, 0.5),
            "floor_p99": pct(floor_latencies, 0.99),
            "rss_mb": [round(r / 2**20) for r in rss_samples],
            "cpu_us_per_frame": daphne_cpu / max(1, delivered) * 1e6,
            "cpu": {name: round(sum(v) / max(1, len(v))) for name, v in cpu.items()},
            "elapsed": elapsed,
        }


async def scenario_steady(bench: Bench, overload: bool) -> None:
    args = bench.args
    job_ids = bench.new_jobs(args.jobs)
    before = bench.rss()
    clients = await bench.open_clients(args.clients, job_ids)
    await asyncio.sleep(1)
    after = bench.rss()
    rate = args.rate * (args.overload if overload else 1)
    result = await bench.run_load(rate=rate, seconds=args.seconds, clients=clients, job_ids=job_ids)
    name = "(b) overload" if overload else "(a) steady"
    print(f"\n{name}: {len(clients)} clients ({bench.connect_errors} failed to connect), {args.jobs} jobs x "
          f"{rate:g}/s for {args.seconds:g}s -> {result['events_written']} events "
          f"({result['write_rate']:.0f}/s written), {result['frames_expected']} frames expected")  # fmt: skip
    print(f"  delivered {result['frames_delivered']} frames = {result['frames_per_s']:.0f} frames/s")
    print(f"  commit -> arrival: p50 {ms(result['p50'])}, p99 {ms(result['p99'])}, max {ms(result['max'])}")
    print(f"  bare group_send floor (10 receivers, same event rate): p50 {ms(result['floor_p50'])}, "
          f"p99 {ms(result['floor_p99'])}")  # fmt: skip
    print(f"  mean CPU during load (% of one core): {result['cpu']}; daphne CPU per delivered frame "
          f"{result['cpu_us_per_frame']:.0f} us (relay included on the embedded default); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"  final status delivered: {result['finals']} clients; last progress: {result['last_progress']}")
    per_connection = (after - before) / max(1, len(clients)) / 1024
    print(f"  daphne RSS: {before / 2**20:.0f} MB before clients, {after / 2**20:.0f} MB with them "
          f"({per_connection:.1f} KiB per connection); during load {result['rss_mb']}")  # fmt: skip
    for ws in clients:
        await ws.close()
    await asyncio.sleep(1)


async def scenario_idle(bench: Bench) -> None:
    args = bench.args
    before = bench.rss()
    started = time.monotonic()
    clients = await bench.open_clients(args.idle, None)
    connect_s = time.monotonic() - started
    await asyncio.sleep(args.hold)
    after = bench.rss()
    pongs = 0
    sample = clients[:: max(1, len(clients) // 100)]
    for ws in sample:
        try:
            await ws.send('{"type":"ping"}')
            if json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong":
                pongs += 1
        except Exception:
            pass
    still_open = sum(1 for ws in clients if ws.state.name == "OPEN")
    print(f"\n(c) idle: {len(clients)}/{args.idle} connected in {connect_s:.1f}s, {bench.connect_errors} errors; "
          f"after {args.hold:g}s {still_open} still open; {pongs}/{len(sample)} sampled pings answered")  # fmt: skip
    print(f"  daphne RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MB "
          f"({(after - before) / max(1, len(clients)) / 1024:.1f} KiB per connection)")  # fmt: skip
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["parent", "writer", "relay"], default="parent")
    parser.add_argument("--only", default="steady,overload,idle")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2.0, help="reports per job per second")
    parser.add_argument("--overload", type=float, default=5.0, help="rate multiplier for (b)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--jobs-file")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.role == "writer":
        return role_writer(args)
    if args.role == "relay":
        return role_relay(args)
    bench = Bench(args)
    layer = "Redis pub/sub layer, relay in its own process" if bench.redis else "in-memory layer, relay in daphne"
    database = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(f"ws_latency: one daphne process, {layer}, {database}")
    try:
        bench.prepare()
        bench.start_server()
        only = args.only.split(",")

        async def all_scenarios() -> None:
            if "steady" in only:
                await scenario_steady(bench, overload=False)
            if "overload" in only:
                await scenario_steady(bench, overload=True)
            if "idle" in only:
                await scenario_idle(bench)

        asyncio.run(all_scenarios())
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
