"""The chaos soak of issue 14: JobAdmin run the way production runs it, broken on purpose.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python -m benchmarks.chaos
    # options: --duration 360 --jobs-per-s 2 --seed 1 --fault-every 20
    #          --faults kill-worker,kill-monitor,kill-daphne,redis-restart,db-block,partition-worker,partition-monitor

On the PostgreSQL server of ``DATABASE_URL`` it creates a database of its own
(``jobadmin_chaos_<pid>``, dropped at the end: it blocks it), and it starts a redis-server of
its own on a free port (it restarts it empty). Then the processes of docs/deploy.md's
Procfile: 2 daphne (two ports), 2 ``qcluster``, a ``monitor`` and a standby monitor. Each
is restarted when it exits, as systemd's ``Restart=always`` does.

For ``--duration`` seconds a stream of demo jobs goes in through the API (some failing at
an item, some paused then resumed, some cancelled), websocket subscribers on both daphne
processes follow them (``all``, a user's own channel, single jobs; a socket whose daphne
dies resumes on the other one with ``since``), and every ``--fault-every`` seconds one fault
is injected, in turn: SIGKILL a qcluster's process group (restarted), SIGKILL the leading
monitor (restarted: the new standby), SIGKILL a daphne (restarted), SIGKILL Redis and start
it again empty, refuse connections to the database for 10-20 s (``--block-seconds``;
``ALLOW_CONNECTIONS false``
and ``pg_terminate_backend``), black-hole the busiest qcluster's way to PostgreSQL, or the
leading monitor's, for 7-12 s (``--partition-seconds``: each of them reaches the database
through a proxy of the soak's own, ``tests/deploy/blackhole.py``, that then accepts and reads
every byte and forwards none, closes nothing, as a hung pooler or a dropped link does).

Then it waits until every job is finished and checks (``benchmarks/chaos_checks.py``):
every job terminal; none lost (every job the API accepted exists, finished); none run twice
at once (from each job's event log); no failure but the ones asked for and those of killed
workers; for every subscriber, the events it saw against ``GET /api/jobs/<id>/events/`` of
its jobs; the most connections PostgreSQL saw for the database; never two monitors
leading. It prints a summary and exits 1 if a check fails. A benchmark in that it prints
figures; unlike the others, it fails on a broken guarantee (the test suite runs a short one,
``tests/deploy/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import chaos_checks as checks
from tests.deploy.blackhole import BlackHoleProxy

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
HEARTBEAT_INTERVAL = 1.0  # JOBADMIN_HEARTBEAT_INTERVAL of the soak's processes
SEND_RATE = 15  # websocket messages a subscriber sends per second at most (the server allows 20)
REPLAYED = -201  # Api.call's status for a 201 with Idempotent-Replayed: true
ENQUEUE_RETRY_FOR = 120.0  # seconds an enqueue is retried (with its key) through faults
FAULTS = (
    "kill-worker",
    "kill-monitor",
    "kill-daphne",
    "redis-restart",
    "db-block",
    "partition-worker",
    "partition-monitor",
)
SIGKILLS = ("kill-worker", "kill-monitor", "kill-daphne", "redis-restart")
WORKER_OUTAGES = ("db-block", "partition-worker")  # a worker cannot write while one lasts
# The processes a partition can cut off from PostgreSQL: each reaches it through a proxy of its own.
BEHIND_PROXIES = ("worker-1", "worker-2", "monitor-1", "monitor-2")
RESUME_OVERLAP = 200  # as live.js: resume this many ids early, drop the repeats
# Our own values for every setting the children read; nothing of the caller's leaks in
# (the test process has the test settings' fast timings in its environment).
OWN_PREFIXES = ("JOBADMIN_", "Q_", "DJANGO_", "REDIS_", "DATABASE_", "JOB_", "API_", "HEALTH_", "CONN_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- processes -------------------------------------------------------------------------------
@dataclass
class Incarnation:
    role: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    killed_at: float | None = None
    pids: set[int] = field(default_factory=set)  # the process group's pids when it was killed

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    """The deployment's processes, each restarted when it exits (``Restart=always``)."""

    def __init__(
        self, tmp: Path, env: dict[str, str], ports: dict[str, int], own_env: dict[str, dict[str, str]]
    ) -> None:
        self.tmp = tmp
        self.env = env
        self.ports = ports
        self.own_env = own_env  # a role's own variables (its way to the database)
        self.current: dict[str, Incarnation] = {}
        self.history: list[Incarnation] = []
        self.unexpected_exits: list[str] = []
        self.lease_exits = 0  # monitors that exited (75) because a duty outlived their lost lease
        self.lock = threading.Lock()

    def argv(self, role: str) -> list[str]:
        if role.startswith("daphne"):
            return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.ports[role]), "jobadmin.asgi:application"]
        if role.startswith("worker"):
            return ["manage.py", "qcluster"]
        return ["manage.py", "monitor"]

    def start(self, role: str) -> Incarnation:
        path = self.tmp / f"{role}-{sum(1 for i in self.history if i.role == role)}.log"
        handle = open(path, "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, *self.argv(role)],
            cwd=ROOT,
            env={**self.env, **self.own_env.get(role, {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        incarnation = Incarnation(role, proc, path, time.time())
        with self.lock:
            self.current[role] = incarnation
            self.history.append(incarnation)
        return incarnation

    def kill(self, role: str) -> Incarnation:
        """SIGKILL the role's whole process group (a qcluster's workers too), as a machine dies."""
        import psutil

        incarnation = self.current[role]
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(incarnation.proc.pid)
            incarnation.pids = {parent.pid, *(child.pid for child in parent.children(recursive=True))}
        incarnation.killed_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(incarnation.proc.pid, signal.SIGKILL)
        incarnation.proc.wait()
        return incarnation

    def supervise(self) -> None:
        """Restart what exited on its own (a monitor that lost its lease mid-duty exits with 75)."""
        for role, incarnation in list(self.current.items()):
            code = incarnation.proc.poll()
            if code is not None and incarnation.killed_at is None:
                incarnation.killed_at = time.time()
                self.start(role)
                if role.startswith("monitor") and code == 75:  # by design: come back as a standby
                    self.lease_exits += 1
                    continue
                tail = " | ".join(incarnation.text().strip().splitlines()[-3:])
                self.unexpected_exits.append(f"{role} (pid {incarnation.proc.pid}) exited with {code}: {tail[-300:]}")
                log(f"{role} exited with {code}; restarted it")

    def leader(self) -> str | None:
        """The monitor role that leads now, from the logs of the current incarnations."""
        for role, incarnation in self.current.items():
            if role.startswith("monitor") and incarnation.proc.poll() is None:
                text = incarnation.text()
                if text.count("monitor: running at") > text.count("monitor: stopped leading at"):
                    return role
        return None

    def stop_all(self) -> None:
        for incarnation in self.current.values():
            if incarnation.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(incarnation.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for incarnation in self.current.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                incarnation.proc.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(incarnation.proc.pid, signal.SIGKILL)
            incarnation.proc.wait()

    def killed_pids(self) -> set[int]:
        return {pid for incarnation in self.history for pid in incarnation.pids}


class Redis:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the database ------------------------------------------------------------------------------
class Database:
    """The soak's own database on the server of DATABASE_URL, and the connections watching it."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.name = f"jobadmin_chaos_{os.getpid()}"
        self.url = urllib.parse.urlunsplit(parts._replace(path=f"/{self.name}"))
        self.server = {
            "host": parts.hostname or None,
            "port": parts.port or None,
            "user": urllib.parse.unquote(parts.username) if parts.username else None,
            "password": urllib.parse.unquote(parts.password) if parts.password else None,
        }
        self.max_connections = 0
        self.samples: list[int] = []
        self.blocked_until = 0.0

    def through(self, proxy: BlackHoleProxy) -> str:
        """This database's URL by way of ``proxy`` (on this machine)."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{proxy.port}"))

    def connect(self, dbname: str) -> Any:
        import psycopg

        params: dict[str, Any] = {k: v for k, v in self.server.items() if v is not None}
        return psycopg.connect(dbname=dbname, autocommit=True, **params)

    def create(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def block(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [self.name])

    def allow(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def block_for(self, seconds: float) -> float:
        """Refuse connections for ``seconds``, timed in this thread (the soak's event loop can
        run late under load, and a block that overruns fails live workers' jobs by design).
        Returns how long connections were really refused."""
        started = time.monotonic()
        self.block()
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        self.allow()
        return time.monotonic() - started

    def watch(self, stop: threading.Event) -> None:
        """Count the database's connections (pg_stat_activity) every 0.25 s."""
        with self.connect("postgres") as conn:
            while not stop.wait(0.25):
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.name]).fetchone()
                count = int(row[0]) if row else 0
                self.samples.append(count)
                self.max_connections = max(self.max_connections, count)

    def running_worker_pids(self) -> list[int]:
        with self.connect(self.name) as conn:
            rows = conn.execute("SELECT worker FROM jobs_job WHERE status = 'running'").fetchall()
        return [int(worker.rsplit(":", 1)[1]) for (worker,) in rows if worker and ":" in worker]

    def jobs(self) -> list[dict[str, Any]]:
        with self.connect(self.name) as conn:
            rows = conn.execute("SELECT id, status, error, params, type, user_id FROM jobs_job").fetchall()
        return [
            {"id": str(r[0]), "status": r[1], "error": r[2] or "", "params": r[3], "type": r[4], "user": r[5]}
            for r in rows
        ]


# --- the API -----------------------------------------------------------------------------------
class Unreachable(Exception):
    """Nothing was sent: the daphne is not there (safe to try another)."""


class Broken(Exception):
    """The request may or may not have been applied (a reset, a time-out)."""


class Api:
    def __init__(self, ports: list[int], token: str) -> None:
        self.ports = ports
        self.token = token
        self.turn = 0

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 15, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request, to the daphne processes in turn; one that is down is skipped."""
        self.turn += 1
        last: Exception | None = None
        for i in range(len(self.ports)):
            port = self.ports[(self.turn + i) % len(self.ports)]
            try:
                return self._once(port, method, path, body, timeout, headers or {})
            except Unreachable as exc:
                last = exc
        raise last or Unreachable("no daphne")

    def _once(
        self, port: int, method: str, path: str, body: Any, timeout: float, headers: dict[str, str]
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json", **headers},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.headers.get("Idempotent-Replayed") == "true":
                    return REPLAYED, json.loads(response.read() or b"null")
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return int(exc.code), json.loads(raw or b"null")
            except ValueError:
                return int(exc.code), raw[:200].decode(errors="replace")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise Unreachable(str(exc)) from exc
            raise Broken(str(exc)) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Broken(str(exc)) from exc

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            answer: Any = None
            for _ in range(10):
                try:
                    status, body = self.call("GET", f"/api/jobs/{job_id}/events/?limit=500&after={after}")
                    if status == 200:
                        break
                    answer = (status, body)
                except (Unreachable, Broken) as exc:
                    answer = exc
                time.sleep(1)
            else:
                raise RuntimeError(f"could not read the events of {job_id}: {answer!r}")
            rows.extend(body["results"])
            if not body["has_more"]:
                return rows
            after = body["last_event_id"]


# --- websocket subscribers ---------------------------------------------------------------------
class Subscriber:
    """One client of ``/ws/jobs/``, resuming on the other daphne when its socket breaks.

    ``kind``: ``all`` (the ``all`` channel), ``user`` (the automatic channel of the jobs'
    owner) or ``jobs`` (``job:<id>`` of some jobs, each with ``since`` 0)."""

    def __init__(self, name: str, kind: str, token: str, ports: list[int], home: int) -> None:
        self.name, self.kind, self.token, self.ports = name, kind, token, ports
        self.port_index = home
        self.seen: dict[str, set[int]] = {}
        self.last_event_id = 0
        self.jobs: list[str] = []  # the jobs it subscribed to (kind "jobs")
        self.finished: set[str] = set()
        self.connections = 0
        self.resumes = 0
        self.duplicates_on_a_socket = 0
        self.welcome_not_first = 0
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.ws: Any = None
        self.ready = asyncio.Event()
        self.stopped = False
        self.user_id: int | None = None
        self.sent_at: deque[float] = deque(maxlen=SEND_RATE)
        self.pace = asyncio.Lock()

    def subscribe_later(self, job_id: str) -> None:
        self.jobs.append(job_id)
        self.seen.setdefault(job_id, set())
        if self.ws is not None:
            asyncio.ensure_future(self._send({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}))

    async def _send(self, message: dict[str, Any], ws: Any = None) -> None:
        """Send on the socket, at most ``SEND_RATE`` messages a second (the server's limit is 20:
        a subscribe refused as ``rate-limited`` would leave the job unwatched)."""
        await self._paced()
        with contextlib.suppress(Exception):
            await (ws or self.ws).send(json.dumps(message))

    async def _paced(self) -> None:
        async with self.pace:  # one sender at a time: waiters woken together would burst
            while len(self.sent_at) >= SEND_RATE and time.monotonic() - self.sent_at[0] < 1.0:
                await asyncio.sleep(1.0 - (time.monotonic() - self.sent_at[0]))
            self.sent_at.append(time.monotonic())

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        backoff = 0.2
        while not self.stopped:
            port = self.ports[self.port_index % len(self.ports)]
            try:
                async with connect(
                    f"ws://127.0.0.1:{port}/ws/jobs/?token={self.token}", open_timeout=10, max_queue=None
                ) as ws:
                    await self._session(ws)
                    backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.closes[type(exc).__name__] += 1
            self.ws = None
            if self.stopped:
                return
            self.port_index += 1  # the other daphne
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    async def _session(self, ws: Any) -> None:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if first.get("type") != "welcome":
            self.welcome_not_first += 1
        else:
            self.user_id = first["user"]["id"]
        resuming = self.connections > 0
        self.connections += 1
        self.resumes += resuming
        since = max(0, self.last_event_id - RESUME_OVERLAP)
        if self.kind == "all":
            await ws.send(json.dumps({"type": "subscribe", "channel": "all", **({"since": since} if resuming else {})}))
        elif self.kind == "user" and resuming:
            await ws.send(json.dumps({"type": "subscribe", "channel": f"user:{self.user_id}", "since": since}))
        elif self.kind == "jobs":
            for job_id in [j for j in self.jobs if j not in self.finished]:
                await self._send({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}, ws)
        self.ws = ws
        on_this_socket: set[int] = set()
        if first.get("type") != "welcome":
            self._frame(first, on_this_socket)
        async for frame in ws:
            self._frame(json.loads(frame), on_this_socket)

    def _frame(self, message: dict[str, Any], on_this_socket: set[int]) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            self.ready.set()
        elif kind == "error":
            self.errors[message.get("code", "?")] += 1
        elif kind == "job-update":
            event_id, job = message["event_id"], message["job"]
            if event_id in on_this_socket:
                self.duplicates_on_a_socket += 1
            on_this_socket.add(event_id)
            self.last_event_id = max(self.last_event_id, event_id)
            if self.kind == "jobs" and job["id"] not in self.seen:
                return
            self.seen.setdefault(job["id"], set()).add(event_id)
            if job["status"] in checks.TERMINAL:
                self.finished.add(job["id"])

    def jobs_to_check(self, owners: dict[str, int | None]) -> list[str]:
        """The jobs whose every event this subscriber must have seen (``owners``: job -> user)."""
        if self.kind == "jobs":
            return list(self.jobs)
        if self.kind == "user":  # its own channel: the jobs of its user (not the system's)
            return [job for job, user in owners.items() if user == self.user_id]
        return list(owners)


# --- the soak ----------------------------------------------------------------------------------
@dataclass
class Figures:
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> what was asked
    enqueue_outcomes: Counter[str] = field(default_factory=Counter)
    action_outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    overruns: list[str] = field(default_factory=list)  # blocks longer than the workers ride out
    fault_log: list[str] = field(default_factory=list)
    takeovers: list[float] = field(default_factory=list)
    partition_takeovers: list[float] = field(default_factory=list)  # a standby's, the leader cut off


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
        self.db = Database(args.database_url)
        self.redis = Redis(self.tmp)
        self.ports = {"daphne-a": free_port(), "daphne-b": free_port()}
        self.figures = Figures()
        self.stop_stream = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.subscribers: list[Subscriber] = []
        self.control_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chaos-control")
        self.proxies: dict[str, BlackHoleProxy] = {}

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(
            DJANGO_SETTINGS_MODULE="jobadmin.settings",
            DJANGO_SECRET_KEY=f"chaos-{os.getpid()}-same-on-every-process",
            DATABASE_URL=self.db.url,
            REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0",
            REDIS_PREFIX=f"jobadmin-chaos-{os.getpid()}",
            Q_CLUSTER_NAME=f"jobadmin-chaos-{os.getpid()}",
            JOBADMIN_DATA_DIR=str(self.tmp / "data"),
            Q_WORKERS=str(self.args.q_workers),
            Q_LOG_LEVEL="INFO",
            JOBADMIN_DB_POOL_MAX=str(self.args.pool_max),
            JOBADMIN_STALL_THRESHOLD=str(self.args.stall_threshold),
            JOBADMIN_HEARTBEAT_INTERVAL=f"{HEARTBEAT_INTERVAL:g}",
            JOBADMIN_MONITOR_LEASE=str(self.args.lease),
            # One script stands in for many people: a person's rate limits would refuse its stream.
            API_THROTTLE_ENQUEUE="1000000/min",
            API_THROTTLE_USER="1000000/min",
            PYTHONUNBUFFERED="1",
        )
        return env

    def manage(self, *argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env=self.child_env(), capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(argv[:2])} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def prepare(self) -> tuple[str, str]:
        """The database, migrated; the jobs' owner and a watcher (``jobs.view_job``), with tokens."""
        self.db.create()
        self.redis.start()
        self.manage("migrate", "-v0")
        script = (
            "from django.contrib.auth import get_user_model; from django.contrib.auth.models import Permission;"
            "from rest_framework.authtoken.models import Token;"
            "U = get_user_model(); owner = U.objects.create_user('chaos-owner');"
            "watcher = U.objects.create_user('chaos-watcher', is_staff=True);"
            "watcher.user_permissions.add(Permission.objects.get(codename='view_job'));"
            "print('TOKENS', Token.objects.create(user=owner).key, Token.objects.create(user=watcher).key)"
        )
        out = self.manage("shell", "-c", script)
        owner, watcher = next(line for line in out.splitlines() if line.startswith("TOKENS")).split()[1:]
        return owner, watcher

    # --- the stream of jobs ---
    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stream(self, api: Api) -> None:
        interval = 1.0 / self.args.jobs_per_s
        n = 0
        start = time.monotonic()
        while not self.stop_stream.is_set():
            self.spawn(self.one_job(api, n))
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))

    async def one_job(self, api: Api, n: int) -> None:
        rng = self.rng
        roll = rng.random()
        plan = "plain" if roll < 0.6 else "fail_at" if roll < 0.75 else "pause" if roll < 0.9 else "cancel"
        items = rng.randint(100, 200) if plan == "pause" else rng.randint(20, 100)
        items = max(1, round(items * self.args.job_scale))
        params: dict[str, Any] = {"items": items, "delay_ms": rng.randint(5, 20)}
        if plan == "fail_at":
            params["fail_at"] = rng.randint(1, items)
        job_id = await self.enqueue(api, {"type": "demo", "params": params})
        if job_id is None:
            return
        self.figures.accepted[job_id] = {"plan": plan, **params}
        if n % 3 == 0:
            self.subscribers_of("jobs")[n // 3 % 2].subscribe_later(job_id)
        if plan == "pause":
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            if await self.act(api, job_id, "pause") == 200:
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                await self.act(api, job_id, "resume", until_done=True)
        elif plan == "cancel":
            await asyncio.sleep(rng.uniform(0.0, 2.0))
            await self.act(api, job_id, "cancel")

    async def enqueue(self, api: Api, body: dict[str, Any]) -> str | None:
        """POST the job with an Idempotency-Key, and again with the same key while the answer
        is unknown (a broken connection, no daphne up) or a 503: a client that must not lose a
        job and must not queue it twice. The job's id, or None if it was refused."""
        headers = {"Idempotency-Key": str(uuid.UUID(int=self.rng.getrandbits(128)))}
        outcomes = self.figures.enqueue_outcomes
        deadline = time.monotonic() + ENQUEUE_RETRY_FOR
        while True:
            try:
                status, answer = await asyncio.to_thread(api.call, "POST", "/api/jobs/", body, headers=headers)
                outcome = {REPLAYED: "201 replayed", 503: "503 (retried)"}.get(status, str(status))
            except Unreachable:
                status, answer, outcome = 0, None, "no daphne up (retried)"
            except Broken:
                status, answer, outcome = 0, None, "connection broken (retried)"
            outcomes[outcome] += 1
            if status in (201, REPLAYED):
                return str(answer["id"])
            if status not in (0, 503):
                return None
            if time.monotonic() > deadline:
                outcomes["given up"] += 1
                return None
            await asyncio.sleep(1.0)

    async def act(self, api: Api, job_id: str, action: str, until_done: bool = False) -> int:
        """POST a transition; ``until_done`` retries through faults (a paused job must be resumed)."""
        while True:
            try:
                status, _ = await asyncio.to_thread(api.call, "POST", f"/api/jobs/{job_id}/{action}/")
                outcome = str(status)
            except (Unreachable, Broken) as exc:
                status, outcome = 0, type(exc).__name__
            self.figures.action_outcomes[f"{action} {outcome}"] += 1
            if status in (200, 409) or not until_done:
                return status
            await asyncio.sleep(1)

    def subscribers_of(self, kind: str) -> list[Subscriber]:
        return [s for s in self.subscribers if s.kind == kind]

    # --- faults ---
    def schedule(self) -> list[tuple[float, str]]:
        kinds = [k for k in self.args.faults.split(",") if k]
        at, plan, turn = self.args.warmup, [], 0
        order = list(kinds)
        while at < self.args.duration - self.args.fault_tail:
            if turn % len(order) == 0:
                self.rng.shuffle(order)
            plan.append((at, order[turn % len(order)]))
            turn += 1
            at += self.args.fault_every * self.rng.uniform(0.8, 1.2)
        return plan

    async def faults(self, cluster: Cluster, started: float) -> None:
        outage_over = 0.0
        for at, kind in self.schedule():
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if kind in WORKER_OUTAGES:
                # Two outages back to back are one longer outage to a worker, which it gives its
                # job up to by design: the next waits until the workers have written again.
                await asyncio.sleep(max(0.0, outage_over + BLOCK_MARGIN - time.monotonic()))
            if self.stop_stream.is_set():
                return
            last = max((s.last_event_id for s in self.subscribers), default=0)
            at = time.monotonic() - started
            note = await self.inject(cluster, kind)
            if kind in WORKER_OUTAGES:
                outage_over = time.monotonic()
            self.figures.faults[kind] += 1
            self.figures.fault_log.append(f"{at:6.1f}s {kind} (events up to ~{last}): {note}")
            log(f"fault {kind}: {note}")

    async def inject(self, cluster: Cluster, kind: str) -> str:
        rng = self.rng
        if kind == "kill-worker":
            role = await self.control(self.busiest_worker, cluster)
            gone = await self.control(cluster.kill, role)
            await asyncio.sleep(rng.uniform(1, 4))
            cluster.start(role)
            return f"SIGKILL {role} (pids {sorted(gone.pids)}), restarted"
        if kind == "kill-monitor":
            role = cluster.leader() or rng.choice(["monitor-1", "monitor-2"])
            leading = cluster.leader() is not None
            gone = await self.control(cluster.kill, role)
            cluster.start(role)
            if leading:
                self.spawn(self.takeover(cluster, gone.killed_at or time.time(), self.figures.takeovers))
            return f"SIGKILL {role} (pid {gone.proc.pid}), restarted as the standby"
        if kind == "kill-daphne":
            role = rng.choice(["daphne-a", "daphne-b"])
            gone = await self.control(cluster.kill, role)
            await asyncio.sleep(rng.uniform(1, 4))
            cluster.start(role)
            return f"SIGKILL {role} (pid {gone.proc.pid}), restarted"
        if kind == "redis-restart":
            await self.control(self.redis.kill)
            await asyncio.sleep(rng.uniform(0.5, 3))
            await self.control(self.redis.start)
            return "SIGKILL redis-server, started again empty"
        if kind == "db-block":
            seconds = rng.uniform(*self.args.block_seconds)
            refused = await self.control(self.db.block_for, seconds)
            if refused > outage_budget(self.args.stall_threshold):
                self.figures.overruns.append(f"a block meant for {seconds:.1f} s lasted {refused:.1f} s")
            return f"database refused connections for {refused:.1f} s"
        if kind == "partition-worker":
            role = await self.control(self.busiest_worker, cluster)
            held = await self.control(self.partition_for, role, rng.uniform(*self.args.partition_seconds))
            if held > outage_budget(self.args.stall_threshold):
                self.figures.overruns.append(f"{role}'s partition lasted {held:.1f} s")
            return f"{role} black-holed from PostgreSQL for {held:.1f} s (no reset, nothing forwarded)"
        if kind == "partition-monitor":
            role = cluster.leader() or rng.choice(["monitor-1", "monitor-2"])
            leading = cluster.leader() is not None
            if leading:
                self.spawn(self.takeover(cluster, time.time(), self.figures.partition_takeovers))
            held = await self.control(self.partition_for, role, rng.uniform(*self.args.partition_seconds))
            return f"{role}{' (the leader)' if leading else ''} black-holed from PostgreSQL for {held:.1f} s"
        raise ValueError(kind)

    def partition_for(self, role: str, seconds: float) -> float:
        """Black-hole ``role``'s way to PostgreSQL for ``seconds``, timed in this thread (as
        ``Database.block_for``). Returns how long it was cut off."""
        started = time.monotonic()
        self.proxies[role].cut()
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        self.proxies[role].heal()
        return time.monotonic() - started

    def busiest_worker(self, cluster: Cluster) -> str:
        """The qcluster running the most jobs now (a kill that interrupts nothing proves little)."""
        import psutil

        try:
            running = Counter(self.db.running_worker_pids())
        except Exception:  # the database is blocked: any worker
            running = Counter()
        load: dict[str, int] = {}
        for role in ("worker-1", "worker-2"):
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(cluster.current[role].proc.pid)
                pids = {main.pid, *(child.pid for child in main.children(recursive=True))}
                load[role] = sum(running[pid] for pid in pids)
        top = max(load.values(), default=0)
        return self.rng.choice([role for role, n in load.items() if n == top] or ["worker-1"])

    async def takeover(self, cluster: Cluster, killed_at: float, into: list[float]) -> None:
        """Seconds from a leader's SIGKILL or partition to the next "monitor: running at" of any
        monitor, appended to ``into``."""
        deadline = time.time() + 60
        while time.time() < deadline:
            starts = [
                start
                for incarnation in list(cluster.history)
                if incarnation.role.startswith("monitor")
                for start, _, _ in checks.leader_terms(incarnation.text(), incarnation.role, None)
                if start > killed_at
            ]
            if starts:
                into.append(min(starts) - killed_at)
                return
            await asyncio.sleep(0.2)

    async def supervise(self, cluster: Cluster, until: asyncio.Event) -> None:
        while not until.is_set():
            cluster.supervise()
            await asyncio.sleep(0.5)

    def control(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run the soak's own blocking step (a fault, a look at the database) on threads of its own."""
        return asyncio.get_running_loop().run_in_executor(self.control_pool, func, *args)

    # --- the run ---
    async def run(self, owner: str, watcher: str) -> int:
        # API calls wait up to the pool time-out (10 s) while the database is blocked: enough
        # threads for the stream's calls of that long, and the faults' own (self.control), so a
        # block is always lifted on time.
        threads = max(48, int(self.args.jobs_per_s * 30))
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=threads))
        if any(kind.startswith("partition-") for kind in self.args.faults.split(",")):
            host, port = str(self.db.server["host"] or "127.0.0.1"), int(self.db.server["port"] or 5432)
            self.proxies = {role: BlackHoleProxy(host, port).start() for role in BEHIND_PROXIES}
        own_env = {role: {"DATABASE_URL": self.db.through(proxy)} for role, proxy in self.proxies.items()}
        cluster = Cluster(self.tmp, self.child_env(), self.ports, own_env)
        self.cluster = cluster
        for role in ("daphne-a", "daphne-b", "worker-1", "worker-2", "monitor-1"):
            cluster.start(role)
        await asyncio.sleep(1.5)  # the first monitor leads; the second waits
        cluster.start("monitor-2")
        deadline = time.monotonic() + 60
        while not all(listening(port) for port in self.ports.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start")
            await asyncio.sleep(0.2)
        # No wait for the first relay: migrate wrote its watermark (live migration 0003), so
        # what the stream writes before a monitor leads is published too, and checked below.
        ports = list(self.ports.values())
        api = Api(ports, owner)
        for i, (kind, token) in enumerate([("all", watcher), ("user", owner), ("jobs", watcher)] * 2):
            self.subscribers.append(Subscriber(f"{kind}@{'ab'[i // 3]}", kind, token, ports, i // 3))
        done = asyncio.Event()
        runners = [asyncio.ensure_future(s.run()) for s in self.subscribers]
        supervisor = asyncio.ensure_future(self.supervise(cluster, done))
        for s in self.subscribers_of("all"):
            await asyncio.wait_for(s.ready.wait(), 30)
        await asyncio.sleep(1)  # the "user" sockets' welcome hold is over: live from here
        stop_watch = threading.Event()
        watcher_thread = threading.Thread(target=self.db.watch, args=(stop_watch,), daemon=True)
        watcher_thread.start()

        log(f"soak: {self.args.duration:g} s, {self.args.jobs_per_s:g} jobs/s, faults {self.args.faults}")
        started = time.monotonic()
        streaming = asyncio.ensure_future(self.stream(api))
        faulting = asyncio.ensure_future(self.faults(cluster, started))
        await asyncio.sleep(self.args.duration)
        self.stop_stream.set()
        await streaming
        await faulting
        # The pauses still open are resumed, every job reaches a final state.
        quiet_deadline = time.monotonic() + self.args.stall_threshold * 2 + 120
        while self.tasks and time.monotonic() < quiet_deadline:
            await asyncio.sleep(0.5)
        log("stream over; waiting for every job to finish")
        jobs = await self.control(self.db.jobs)
        while any(j["status"] not in checks.TERMINAL for j in jobs) and time.monotonic() < quiet_deadline:
            await asyncio.sleep(1)
            jobs = await self.control(self.db.jobs)
        quiet_after = time.monotonic() - started - self.args.duration
        log(f"quiet {quiet_after:.0f} s after the stream; reading every job's events")
        reader = Api(ports, watcher)  # jobs.view_job: the system's own jobs too (purge-history)
        # A few readers at once: a long soak has tens of thousands of jobs to read.
        readers = asyncio.Semaphore(8)

        async def read(job_id: str) -> list[dict[str, Any]]:
            async with readers:
                return await asyncio.to_thread(reader.events, job_id)

        logs = await asyncio.gather(*(read(j["id"]) for j in jobs))
        events = {j["id"]: rows for j, rows in zip(jobs, logs, strict=True)}
        owners = {j["id"]: j["user"] for j in jobs}
        # Let the subscribers catch up with the end (the relay's last batches, a late catch-up read).
        catch_up = time.monotonic() + 15
        while time.monotonic() < catch_up and any(
            checks.delivery(s.seen.get(job, ()), events[job]).broken
            for s in self.subscribers
            for job in s.jobs_to_check(owners)
        ):
            await asyncio.sleep(0.5)
        stop_watch.set()
        done.set()
        for s in self.subscribers:
            s.stopped = True
        for task in [*runners, supervisor]:
            task.cancel()
        await asyncio.gather(*runners, supervisor, return_exceptions=True)
        return self.report(cluster, jobs, events, started, quiet_after)

    # --- checks and figures ---
    def report(
        self,
        cluster: Cluster,
        jobs: list[dict[str, Any]],
        events: dict[str, list[dict[str, Any]]],
        started: float,
        quiet_after: float,
    ) -> int:
        now = time.time()
        figures, accepted = self.figures, self.figures.accepted
        by_id = {j["id"]: j for j in jobs}
        statuses = Counter(j["status"] for j in jobs)
        not_terminal = [j["id"] for j in jobs if j["status"] not in checks.TERMINAL]
        lost = [job_id for job_id in accepted if job_id not in by_id]
        # A demo job no enqueue was answered with: an enqueue retried after its answer was lost,
        # queued twice (the Idempotency-Key must prevent it).
        unasked = [j["id"] for j in jobs if j["type"] == "demo" and j["id"] not in accepted]
        killed = cluster.killed_pids()
        causes: Counter[str] = Counter()
        unexpected: list[str] = []
        for j in jobs:
            if j["status"] == "failed":
                cause = checks.failure_cause(j["error"], killed, (j["params"] or {}).get("fail_at"))
                causes[cause] += 1
                if cause == "unexpected":
                    unexpected.append(f"{j['id']}: {j['error'][:160]}")
        twice = {job_id: p for job_id, rows in events.items() if (p := checks.run_problems(rows))}
        skipped = {}
        for j in jobs:
            if j["type"] == "demo" and j["status"] == "completed":
                if missed := checks.skipped_items(events[j["id"]], j["params"]["items"]):
                    skipped[j["id"]] = missed
        last_status = {
            job_id: next((e["payload"]["job"]["status"] for e in reversed(rows) if e["payload"].get("job")), None)
            for job_id, rows in events.items()
        }
        log_disagrees = [j["id"] for j in jobs if last_status.get(j["id"]) != j["status"]]
        deliveries: dict[str, dict[str, checks.Delivery]] = {}
        owners = {j["id"]: j["user"] for j in jobs}
        for s in self.subscribers:
            deliveries[s.name] = {
                job: checks.delivery(s.seen.get(job, ()), events[job]) for job in s.jobs_to_check(owners)
            }
        terms = [
            term
            for incarnation in cluster.history
            if incarnation.role.startswith("monitor")
            for term in checks.leader_terms(
                incarnation.text(), f"{incarnation.role}#{incarnation.proc.pid}", incarnation.killed_at or now
            )
        ]
        overlaps = checks.leader_overlaps(terms)
        plans = Counter(spec["plan"] for spec in accepted.values())

        print("\n=== chaos soak ===")
        print(f"duration {self.args.duration:g} s, {self.args.jobs_per_s:g} jobs/s, job scale {self.args.job_scale:g}, "
              f"seed {self.args.seed}, "
              f"quiet {quiet_after:.0f} s after the stream; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")  # fmt: skip
        rows = [
            ("jobs accepted by the API (201)", f"{len(accepted)} ({dict(plans)})"),
            ("jobs in the database", str(len(jobs))),
            ("terminal by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
            ("failed by cause", ", ".join(f"{k} {v}" for k, v in sorted(causes.items())) or "-"),
            ("enqueue answers", ", ".join(f"{k}: {v}" for k, v in sorted(figures.enqueue_outcomes.items()))),
            ("actions", ", ".join(f"{k}: {v}" for k, v in sorted(figures.action_outcomes.items())) or "-"),
            ("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(figures.faults.items())) or "-"),
            ("SIGKILLs (processes and Redis)", str(sum(v for k, v in figures.faults.items() if k in SIGKILLS))),
            ("monitor takeovers after SIGKILL", ", ".join(f"{t:.1f} s" for t in figures.takeovers) or "-"),
            (
                "monitor takeovers, the leader cut off",
                ", ".join(f"{t:.1f} s" for t in figures.partition_takeovers) or "-",
            ),
            ("processes that exited by themselves", str(len(cluster.unexpected_exits))),
            ("monitors that exited on a lost lease (75)", str(cluster.lease_exits)),
            ("not terminal", str(len(not_terminal))),
            ("lost (accepted, not in the database)", str(len(lost))),
            ("queued twice (a demo job no answer named)", str(len(unasked))),
            ("run twice at once (duplicates)", str(len(twice))),
            ("completed with items skipped", str(len(skipped))),
            ("final status != the log's last event", str(len(log_disagrees))),
            ("failed unexpectedly (not fail_at, worker alive)", str(len(unexpected))),
            ("max PostgreSQL connections (database)", str(self.db.max_connections)),
            ("monitor terms / two leading at once", f"{len(terms)} / {len(overlaps)}"),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        print("\n  subscriber  sockets  resumes  jobs  events seen  mismatched jobs  conflated progress  "
              "dup on a socket  welcome not first  errors")  # fmt: skip
        mismatched_total = 0
        for s in self.subscribers:
            per_job = deliveries[s.name]
            mismatched = [job for job, d in per_job.items() if d.broken]
            mismatched_total += len(mismatched)
            conflated = sum(len(d.conflated) for d in per_job.values())
            seen = sum(len(v) for v in s.seen.values())
            print(f"  {s.name:<10}  {s.connections:>7}  {s.resumes:>7}  {len(per_job):>4}  {seen:>11}  "
                  f"{len(mismatched):>15}  {conflated:>18}  {s.duplicates_on_a_socket:>15}  "
                  f"{s.welcome_not_first:>17}  {dict(s.errors) or '-'}")  # fmt: skip
            for job in mismatched[:3]:
                d = per_job[job]
                kinds = {e["event_id"]: e["kind"] for e in events[job]}
                missing = [f"{i} {kinds[i]}" for i in d.missing_status[:6]]
                print(f"      job {job}: never delivered {missing}, last progress {d.missing_last_progress}, "
                      f"not in its log {d.extra[:5]}; seen {sorted(s.seen.get(job, ()))[:8]}")  # fmt: skip
        print("\nfaults:")
        for line in figures.fault_log:
            print(f"  {line}")
        problems = {
            "not terminal": not_terminal,
            "lost": lost,
            "queued twice by a retried enqueue": unasked,
            "run twice at once": [f"{k}: {v[:2]}" for k, v in twice.items()],
            "completed with items skipped": [f"{k}: {v[:5]}" for k, v in skipped.items()],
            "final status disagrees with the log": log_disagrees,
            "failed unexpectedly": unexpected,
            "subscriber mismatches": ["see the table"] * mismatched_total,
            "duplicates on one socket": ["see the table"] * sum(s.duplicates_on_a_socket for s in self.subscribers),
            "welcome not first": ["see the table"] * sum(s.welcome_not_first for s in self.subscribers),
            "two monitors leading": overlaps,
            "processes that exited by themselves": cluster.unexpected_exits,
            "database blocks longer than the workers ride out (the soak's fault)": figures.overruns,
        }
        failed = {name: items for name, items in problems.items() if items}
        print("\nresult:", "PASS" if not failed else "FAIL")
        for name, items in failed.items():
            print(f"  {name}: {len(items)}")
            for item in items[:5]:
                print(f"    {item}")
        if self.args.keep_logs:
            print(f"(logs in {self.tmp})")
        return 1 if failed else 0

    def cleanup(self) -> None:
        if hasattr(self, "cluster"):
            self.cluster.stop_all()
        for proxy in self.proxies.values():
            proxy.stop()
        self.redis.kill()
        with contextlib.suppress(Exception):
            self.db.drop()
        if not self.args.keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)


# What a block must leave of the stall threshold: the two heartbeats of the workers' give-up cap,
# the heartbeat between a job's last write and the block, and a retry (RETRY_EVERY) after it.
BLOCK_MARGIN = 2 * HEARTBEAT_INTERVAL + HEARTBEAT_INTERVAL + 1.0


def outage_budget(stall_threshold: float) -> float:
    """The longest database block the workers ride out with this stall threshold."""
    return stall_threshold - BLOCK_MARGIN


def seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX in seconds") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < MIN <= MAX")
    return bounds


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=360.0, help="seconds of jobs and faults")
    parser.add_argument("--jobs-per-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--job-scale", type=float, default=1.0, help="items per demo job, times this")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults (±20%%)")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the first fault")
    parser.add_argument("--fault-tail", type=float, default=10.0, help="no fault starts this close to the end")
    parser.add_argument("--stall-threshold", type=float, default=30.0, help="JOBADMIN_STALL_THRESHOLD")
    parser.add_argument("--block-seconds", type=seconds_range, default=(10.0, 20.0), help="db-block length, MIN-MAX")
    parser.add_argument(
        "--partition-seconds", type=seconds_range, default=(7.0, 12.0), help="partition-* length, MIN-MAX"
    )
    parser.add_argument("--lease", type=float, default=3.0, help="JOBADMIN_MONITOR_LEASE")
    parser.add_argument("--q-workers", type=int, default=3, help="Q_WORKERS of each qcluster")
    parser.add_argument("--pool-max", type=int, default=5, help="JOBADMIN_DB_POOL_MAX of each daphne")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    unknown = set(args.faults.split(",")) - set(FAULTS) - {""}
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if "db-block" in args.faults.split(",") and args.block_seconds[1] > outage_budget(args.stall_threshold):
        # A worker gives its job up after min(JOBADMIN_DB_OUTAGE_GRACE, threshold - 2 heartbeats) of
        # outage (docs/engine.md, "Database outages"): a longer block fails a live worker's job by design.
        parser.error(
            f"--stall-threshold {args.stall_threshold:g} is too short for blocks of up to {args.block_seconds[1]:g} s: "
            f"workers would give their jobs up; it must be at least {args.block_seconds[1] + BLOCK_MARGIN:g}"
        )
    partitions = [kind for kind in args.faults.split(",") if kind.startswith("partition-")]
    if partitions and args.partition_seconds[1] > outage_budget(args.stall_threshold):
        parser.error(
            f"--stall-threshold {args.stall_threshold:g} is too short for partitions of up to "
            f"{args.partition_seconds[1]:g} s: it must be at least {args.partition_seconds[1] + BLOCK_MARGIN:g}"
        )
    if "partition-monitor" in partitions and args.partition_seconds[0] <= 2 * args.lease:
        parser.error(f"--partition-seconds must start above two leases ({2 * args.lease:g} s) for a takeover")
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("the soak needs PostgreSQL: set DATABASE_URL (any database on the server; it makes its own)")
    if shutil.which("redis-server") is None:
        parser.error("the soak needs redis-server (it runs its own)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    soak = Soak(args)
    try:
        owner, watcher = soak.prepare()
        return asyncio.run(soak.run(owner, watcher))
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
