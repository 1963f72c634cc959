"""Live-update latency with real websocket clients against one daphne process.

``--transport sse``: the same clients over Server-Sent Events (``GET /api/stream/``), to compare.

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

The writers (``--writers`` 2 processes, the jobs split between them) write a progress report
through the engine's own ``jobs.services.job_report`` (the job row and its event, one
transaction), as a worker that owns the job does. The clients run
in ``--client-procs`` 2 processes, which report how late their own event loop runs: the
clients must not be the bottleneck. On the embedded default the relay runs in daphne; with
REDIS_URL it runs in its own process, as ``manage.py monitor`` runs it. A benchmark, not a
test: it prints figures and never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    """Progress reports for every job at ``rate``/s each for ``seconds``, then a final event per job
    at the same pace."""
    _setup_django()
    from django.db import connection, transaction
    from django.utils import timezone

    from jobs import services
    from jobs.events import record_job_event
    from jobs.models import EventKind, Job

    if connection.vendor == "postgresql":
        # The writer stands in for many workers; one session waiting for each fsync could not
        # keep up the rate alone. Latency is still measured from the commit.
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
    job_ids = json.loads(Path(args.jobs_file).read_text())
    jobs = {job.pk: job for job in Job.objects.filter(pk__in=job_ids)}
    order = [jobs[pk] for pk in sorted(jobs, key=str)][args.part :: args.parts]  # this writer's share
    total = int(len(order) * args.rate * args.seconds)
    interval = 1.0 / (len(order) * args.rate)
    # The report goes through the engine's job_report, unchanged; only the event it records
    # is kept here, for its id.
    recorded: list[Any] = []

    def keep_event(**kwargs: Any) -> Any:
        recorded.append(record_job_event(**kwargs))
        return recorded[-1]

    services.reports.record_job_event = keep_event  # type: ignore[assignment]
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
        recorded.clear()
        values = {"processed_items": job.processed_items, "progress": job.progress}
        if not services.job_report(job_id=job.pk, worker=BENCH_WORKER, attempt=1, values=values):
            raise SystemExit(f"job {job.pk} is not owned by the benchmark's worker")
        out.write(f"{recorded[-1].id} {time.time()} {job.pk} p\n")
    # Each job's final state comes in its own report slot, paced like the reports: a steady
    # load has jobs ending at their own times. (Writing all of them in one instant made the
    # run's last 1,000 frames a burst that alone set the p99 of (a): 60-160 ms on Redis.)
    for i, job in enumerate(order):
        delay = start + (total + i) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        job.refresh_from_db()
        job.status = "completed"
        job.progress = 100.0
        job.updated_at = timezone.now()
        with transaction.atomic():
            job.save(update_fields=["status", "progress", "updated_at"])
            event = record_job_event(job=job, kind=EventKind.COMPLETED)
        out.write(f"{event.id} {time.time()} {job.pk} f\n")
    out.close()
    print(json.dumps({"written": total + len(order), "seconds": time.monotonic() - start}))


BENCH_WORKER = "ws-latency-writer"  # the worker the benchmark's running jobs belong to


def role_relay(args: argparse.Namespace) -> None:
    _setup_django()
    from live.relay import EventRelay

    relay = EventRelay()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await relay.run(stop)

    asyncio.run(main())


class Lag:
    """How late this process's event loop runs a 10 ms timer: high means the clients are the bottleneck."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - before - 0.01)


def role_clients(args: argparse.Namespace) -> None:
    asyncio.run(clients_main(args))


async def clients_main(args: argparse.Namespace) -> None:
    """``--count`` websocket clients; commands on stdin (stop, ping, close), one JSON reply line each."""
    if args.transport == "sse":
        return await sse_clients_main(args)
    from websockets.asyncio.client import connect

    job_ids = json.loads(Path(args.jobs_file).read_text())
    url = f"ws://127.0.0.1:{args.port}/ws/jobs/?token={args.token}"
    clients: dict[int, Any] = {}
    errors = 0
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        nonlocal errors
        async with gate:
            try:
                ws = await connect(url, compression=None, ping_interval=None, max_queue=None, open_timeout=60)
                await asyncio.wait_for(ws.recv(), 30)  # welcome
                if job_ids:
                    job = job_ids[index % len(job_ids)]
                    await ws.send(json.dumps({"type": "subscribe", "channel": f"job:{job}"}))
                    await asyncio.wait_for(ws.recv(), 30)  # subscribed
                clients[index] = ws
            except Exception:
                errors += 1

    await asyncio.gather(*(one(args.first + i) for i in range(args.count)))
    received: dict[int, list[tuple[int, float, str]]] = {index: [] for index in clients}

    async def reader(ws: Any, sink: list[tuple[int, float, str]]) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await ws.recv()
                now = time.time()
                message = json.loads(frame)
                if message.get("type") == "job-update":
                    sink.append((message["event_id"], now, message["job"]["status"]))

    readers = [asyncio.create_task(reader(ws, received[i])) for i, ws in clients.items()] if job_ids else []
    lag = Lag()
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def reply(**body: Any) -> None:
        sys.stdout.write(json.dumps(body) + "\n")
        sys.stdout.flush()

    reply(opened=len(clients), errors=errors)
    while command := (await stdin.readline()).decode().strip():
        if command == "stop":
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            with open(args.out, "w") as out:
                for index, frames in received.items():
                    out.write(f"c {index}\n")
                    out.writelines(f"{event_id} {arrived} {status}\n" for event_id, arrived, status in frames)
            reply(lag_p99=pct(lag.samples, 0.99), lag_max=max(lag.samples, default=0.0))
        elif command == "ping":
            pongs = 0
            sample = list(clients.values())[:: max(1, len(clients) // args.ping_sample)]
            for ws in sample:
                with contextlib.suppress(Exception):
                    await ws.send('{"type":"ping"}')
                    pongs += json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
            still_open = sum(1 for ws in clients.values() if ws.state.name == "OPEN")
            reply(pongs=pongs, sampled=len(sample), open=still_open)
        elif command == "close":
            await asyncio.gather(*(ws.close() for ws in clients.values()), return_exceptions=True)
            reply(closed=len(clients))
            return


async def sse_clients_main(args: argparse.Namespace) -> None:
    """The same clients over SSE (``--transport sse``): each one ``GET /api/stream/?channels=job:<id>``."""
    import httpx

    job_ids = json.loads(Path(args.jobs_file).read_text())
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=httpx.Limits(max_connections=None))
    streams: dict[int, Any] = {}
    errors = 0
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        nonlocal errors
        async with gate:
            try:
                channel = f"job:{job_ids[index % len(job_ids)]}" if job_ids else ""
                query = f"?channels={channel}&token={args.token}" if channel else f"?token={args.token}"
                request = client.build_request("GET", f"http://127.0.0.1:{args.port}/api/stream/{query}")
                response = await client.send(request, stream=True)
                if response.status_code != 200:
                    raise RuntimeError(response.status_code)
                streams[index] = response
            except Exception:
                errors += 1

    await asyncio.gather(*(one(args.first + i) for i in range(args.count)))
    received: dict[int, list[tuple[int, float, str]]] = {index: [] for index in streams}

    async def reader(response: Any, sink: list[tuple[int, float, str]]) -> None:
        with contextlib.suppress(Exception):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    now = time.time()
                    message = json.loads(line[6:])
                    if message.get("type") == "job-update":
                        sink.append((message["event_id"], now, message["job"]["status"]))

    readers = [asyncio.create_task(reader(r, received[i])) for i, r in streams.items()]
    lag = Lag()
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def reply(**body: Any) -> None:
        sys.stdout.write(json.dumps(body) + "\n")
        sys.stdout.flush()

    reply(opened=len(streams), errors=errors)
    while command := (await stdin.readline()).decode().strip():
        if command == "stop":
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            with open(args.out, "w") as out:
                for index, frames in received.items():
                    out.write(f"c {index}\n")
                    out.writelines(f"{event_id} {arrived} {status}\n" for event_id, arrived, status in frames)
            reply(lag_p99=pct(lag.samples, 0.99), lag_max=max(lag.samples, default=0.0))
        elif command == "ping":  # SSE has no ping: count the streams still open
            reply(pongs=0, sampled=0, open=sum(1 for r in streams.values() if not r.is_closed))
        elif command == "close":
            await asyncio.gather(*(r.aclose() for r in streams.values()), return_exceptions=True)
            await client.aclose()
            reply(closed=len(streams))
            return


class ClientGroup:
    """The client processes of one scenario, driven through their stdin."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.outs: list[Path] = []
        self.opened = 0
        self.errors = 0

    async def command(self, word: str | None) -> list[dict[str, Any]]:
        """Send ``word`` to every client process (None: just read), then read each one's reply."""
        for proc in self.procs:
            assert proc.stdin is not None
            if word is not None:
                proc.stdin.write(f"{word}\n".encode())
                await proc.stdin.drain()
        replies = []
        for proc in self.procs:
            assert proc.stdout is not None
            replies.append(json.loads(await proc.stdout.readline()))
        return replies

    def received(self) -> dict[int, list[tuple[int, float, str]]]:
        """Frames by client index, in arrival order."""
        frames: dict[int, list[tuple[int, float, str]]] = {}
        sink: list[tuple[int, float, str]] = []
        for out in self.outs:
            for line in out.read_text().splitlines():
                first, second, *rest = line.split()
                if first == "c":
                    sink = frames[int(second)] = []
                else:
                    sink.append((int(first), float(second), rest[0]))
        return frames

    async def close(self) -> None:
        await self.command("close")
        for proc in self.procs:
            await proc.wait()


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

        users = get_user_model()
        # Earlier runs' jobs and events stay (the run watches only its own new jobs): deleting
        # them would empty the event log behind a sequence that goes on counting, and the
        # relay would then watch up to 1,000 ids below the run's first event as gaps,
        # re-read on every poll for a second and then twice a second: a start-up cost of the
        # benchmark's clean-up that an installation, whose log is never emptied, does not see.
        self.owner, _ = users.objects.get_or_create(username="bench-owner")
        watcher, _ = users.objects.get_or_create(username="bench-watcher", defaults={"is_staff": True})
        # The watcher follows the `all` channel: that needs jobs.view_job (jobs.policy).
        from django.contrib.auth.models import Permission

        watcher.user_permissions.add(Permission.objects.get(content_type__app_label="jobs", codename="view_job"))
        self.token = Token.objects.get_or_create(user=watcher)[0].key

    def new_jobs(self, count: int) -> list[str]:
        from django.utils import timezone

        from jobs.models import Job

        now = timezone.now()
        jobs = [
            Job(
                type="demo",
                status="running",
                user=self.owner,
                queue="default",
                worker=BENCH_WORKER,
                attempts=1,
                created_at=now,
                updated_at=now,
            )
            for _ in range(count)
        ]
        Job.objects.bulk_create(jobs)
        return [str(job.pk) for job in jobs]

    def start_server(self) -> None:
        import psutil

        self.relay: subprocess.Popen[bytes] | None = None
        if self.redis:
            self.relay = self.spawn("-m", "benchmarks.ws_latency", "--role", "relay", log="relay.log")
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

    # --- clients (in their own processes, so that reading frames does not compete with the parent) ---
    async def open_clients(self, count: int, job_ids: list[str] | None) -> ClientGroup:
        jobs_file = self.tmp / "client-jobs.json"
        jobs_file.write_text(json.dumps(job_ids or []))
        group = ClientGroup()
        per = -(-count // self.args.client_procs)
        for n in range(self.args.client_procs):
            first, last = n * per, min(count, (n + 1) * per)
            if first >= last:
                break
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.ws_latency", "--role", "clients", "--port", str(self.port),
                "--token", self.token, "--first", str(first), "--count", str(last - first),
                "--transport", self.args.transport,
                "--jobs-file", str(jobs_file), "--out", str(self.tmp / f"received-{n}.txt"),
                cwd=ROOT, env=self.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            group.procs.append(proc)
            group.outs.append(self.tmp / f"received-{n}.txt")
        for reply in await group.command(None):
            group.opened += reply["opened"]
            group.errors += reply["errors"]
        self.connect_errors = group.errors
        return group

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

    async def run_load(
        self, *, rate: float, seconds: float, clients: ClientGroup, job_ids: list[str]
    ) -> dict[str, Any]:
        import psutil

        jobs_file = self.tmp / "jobs.json"
        jobs_file.write_text(json.dumps(job_ids))
        parts = self.args.writers
        outs = [self.tmp / f"writes-{rate}-{part}.txt" for part in range(parts)]
        logs = [f"writer-{rate}-{part}.log" for part in range(parts)]
        floor_stop = asyncio.Event()
        floor = asyncio.create_task(self.floor_probe(len(job_ids) * rate, floor_stop))
        rss_samples = [self.rss()]
        writers = [
            self.spawn(
                "-m",
                "benchmarks.ws_latency",
                "--role",
                "writer",
                "--jobs-file",
                str(jobs_file),
                "--out",
                str(out),
                "--rate",
                str(rate),
                "--seconds",
                str(seconds),
                "--part",
                str(part),
                "--parts",
                str(parts),
                log=log,
            )  # fmt: skip
            for part, (out, log) in enumerate(zip(outs, logs, strict=True))
        ]
        started = time.monotonic()
        watched = {"daphne": [self.daphne_ps], "clients": [psutil.Process(p.pid) for p in clients.procs]}
        watched["writer"] = [psutil.Process(writer.pid) for writer in writers]
        if self.relay is not None:
            watched["relay"] = [psutil.Process(self.relay.pid)]
        for procs in watched.values():
            for proc in procs:
                proc.cpu_percent()
        cpu: dict[str, list[float]] = {name: [] for name in watched}
        daphne_cpu_before = sum(self.daphne_ps.cpu_times()[:2])
        while any(writer.poll() is None for writer in writers):
            await asyncio.sleep(1)
            rss_samples.append(self.rss())
            for name, procs in watched.items():
                with contextlib.suppress(psutil.Error):
                    cpu[name].append(sum(proc.cpu_percent() for proc in procs))
        load = os.getloadavg()[0]
        floor_stop.set()
        await asyncio.sleep(self.args.drain)
        rss_samples.append(self.rss())
        daphne_cpu = sum(self.daphne_ps.cpu_times()[:2]) - daphne_cpu_before
        replies = await clients.command("stop")
        received = clients.received()
        floor_latencies = await floor
        elapsed = time.monotonic() - started

        writes: dict[int, tuple[float, str, str]] = {}
        for line in (line for out in outs for line in out.read_text().split("\n")):
            if line:
                raw_id, t, job, kind = line.split()
                writes[int(raw_id)] = (float(t), job, kind)
        by_job: dict[str, list[int]] = {}
        for event_id, (_, job, _) in writes.items():
            by_job.setdefault(job, []).append(event_id)
        latencies = []
        # Latency by the second of the run its change was written in: a stall shows as a bad second.
        first_write = min((t for t, _, _ in writes.values()), default=0.0)
        by_second: dict[int, list[float]] = {}
        finals_ok = last_progress_ok = out_of_order = 0
        delivered = 0
        expected = 0
        for i, frames in received.items():
            job = job_ids[i % len(job_ids)]
            expected += len(by_job.get(job, []))
            got = {event_id for event_id, _, _ in frames}
            delivered += len(frames)
            previous = 0
            for event_id, arrived, _ in frames:
                out_of_order += event_id < previous
                previous = event_id
                if event_id in writes:
                    latencies.append(arrived - writes[event_id][0])
                    by_second.setdefault(int(writes[event_id][0] - first_write), []).append(latencies[-1])
            ids = sorted(by_job.get(job, []))
            final = [e for e in ids if writes[e][2] == "f"]
            progress = [e for e in ids if writes[e][2] == "p"]
            finals_ok += bool(final) and final[-1] in got
            last_progress_ok += bool(progress) and progress[-1] in got
        writer_runs = [json.loads((self.tmp / log).read_text().strip().splitlines()[-1]) for log in logs]
        writer_stats = {
            "written": sum(run["written"] for run in writer_runs),
            "seconds": max(run["seconds"] for run in writer_runs),
        }
        return {
            "events_written": writer_stats["written"],
            "write_rate": writer_stats["written"] / writer_stats["seconds"],
            "frames_expected": expected,
            "frames_delivered": delivered,
            "frames_per_s": delivered / max(0.001, writer_stats["seconds"]),
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "max": max(latencies) if latencies else float("nan"),
            "p99_by_second": [round(pct(v, 0.99) * 1000) for _, v in sorted(by_second.items())],
            "finals": f"{finals_ok}/{len(received)}",
            "last_progress": f"{last_progress_ok}/{len(received)}",
            "out_of_order": out_of_order,
            "floor_p50": pct(floor_latencies, 0.5),
            "floor_p99": pct(floor_latencies, 0.99),
            "rss_mb": [round(r / 2**20) for r in rss_samples],
            "cpu_us_per_frame": daphne_cpu / max(1, delivered) * 1e6,
            "cpu": {name: round(sum(v) / max(1, len(v))) for name, v in cpu.items()},
            "client_lag_p99": max(reply["lag_p99"] for reply in replies),
            "client_lag_max": max(reply["lag_max"] for reply in replies),
            "load": load,
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
    print(f"\n{name}: {clients.opened} clients in {len(clients.procs)} processes ({bench.connect_errors} failed to "
          f"connect), {args.jobs} jobs x {rate:g}/s for {args.seconds:g}s -> {result['events_written']} events "
          f"({result['write_rate']:.0f}/s written), {result['frames_expected']} frames expected")  # fmt: skip
    print(f"  delivered {result['frames_delivered']} frames = {result['frames_per_s']:.0f} frames/s "
          f"(the rest conflated); out of event_id order within a job: {result['out_of_order']}")  # fmt: skip
    print(f"  commit -> arrival: p50 {ms(result['p50'])}, p99 {ms(result['p99'])}, max {ms(result['max'])}")
    print(f"  p99 (ms) of the changes written in each second of the run: {result['p99_by_second']}")
    print(f"  bare group_send floor (10 receivers, same event rate): p50 {ms(result['floor_p50'])}, "
          f"p99 {ms(result['floor_p99'])}")  # fmt: skip
    print(f"  mean CPU during load (% of one core): {result['cpu']}; daphne CPU per delivered frame "
          f"{result['cpu_us_per_frame']:.0f} us (relay included on the embedded default); load average "
          f"{result['load']:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"  client processes' event-loop lag (are the clients keeping up?): p99 {ms(result['client_lag_p99'])}, "
          f"max {ms(result['client_lag_max'])}")  # fmt: skip
    print(f"  final status delivered: {result['finals']} clients; last progress: {result['last_progress']}")
    per_connection = (after - before) / max(1, clients.opened) / 1024
    print(f"  daphne RSS: {before / 2**20:.0f} MB before clients, {after / 2**20:.0f} MB with them "
          f"({per_connection:.1f} KiB per connection); during load {result['rss_mb']}")  # fmt: skip
    await clients.close()
    await asyncio.sleep(1)


async def scenario_idle(bench: Bench) -> None:
    args = bench.args
    before = bench.rss()
    started = time.monotonic()
    clients = await bench.open_clients(args.idle, None)
    connect_s = time.monotonic() - started
    await asyncio.sleep(args.hold)
    after = bench.rss()
    replies = await clients.command("ping")
    pongs = sum(reply["pongs"] for reply in replies)
    sampled = sum(reply["sampled"] for reply in replies)
    still_open = sum(reply["open"] for reply in replies)
    print(f"\n(c) idle: {clients.opened}/{args.idle} connected in {connect_s:.1f}s, {bench.connect_errors} errors; "
          f"after {args.hold:g}s {still_open} still open; {pongs}/{sampled} sampled pings answered")  # fmt: skip
    print(f"  daphne RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MB "
          f"({(after - before) / max(1, clients.opened) / 1024:.1f} KiB per connection)")  # fmt: skip
    await clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["parent", "writer", "relay", "clients"], default="parent")
    parser.add_argument("--only", default="steady,overload,idle")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2.0, help="reports per job per second")
    parser.add_argument("--overload", type=float, default=5.0, help="rate multiplier for (b)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=2, help="writer processes the jobs are split over")
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--client-procs", type=int, default=2, help="client processes the clients are split over")
    parser.add_argument("--jobs-file")
    parser.add_argument("--port", type=int)
    parser.add_argument("--token")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--ping-sample", type=int, default=50)
    parser.add_argument("--out")
    parser.add_argument(
        "--transport", choices=["websocket", "sse"], default="websocket", help="how the clients receive (docs/live.md)"
    )
    args = parser.parse_args()
    if args.role == "writer":
        return role_writer(args)
    if args.role == "relay":
        return role_relay(args)
    if args.role == "clients":
        return role_clients(args)
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
