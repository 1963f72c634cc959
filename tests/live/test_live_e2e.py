"""Live updates end to end: real daphne, a real qcluster, real websocket clients (``websockets``).

On the embedded default one daphne process runs the relay itself. With REDIS_URL (CI:
Redis and PostgreSQL) the relay runs in ``manage.py monitor`` and two daphne processes
deliver through the Redis pub/sub layer; the watching client and the resuming client are
on different processes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Any

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jobs.models import Job, JobEvent
from live.consumers import CATCH_UP_AFTER
from tests.conftest import child_env, free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

FINAL = {"completed", "failed", "cancelled"}


def start_daphne(processes: Any, **env: str) -> int:
    port = free_port()
    args = ("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "jobadmin.asgi:application")
    proc = processes.start(*args, env=child_env(**env), name="daphne")

    def listening() -> bool:
        assert proc.poll() is None, processes.log_of(proc).decode(errors="replace")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=30, message="daphne did not start")
    return port


def http(port: int, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def next_message(ws: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def until(ws: ClientConnection, predicate: Any, sink: list[dict[str, Any]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        message = await next_message(ws, max(0.1, deadline - time.monotonic()))
        sink.append(message)
        if predicate(message):
            return


async def keep_listening(ws: ClientConnection, sink: list[dict[str, Any]], seconds: float) -> None:
    """Collect what else arrives for ``seconds``: a client stays connected after the job ends,
    and the server's catch-up reads of the log (live.consumers.CATCH_UP_AFTER) may
    still bring events the live path missed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            sink.append(await next_message(ws, left))
        except TimeoutError:
            return


def updates_of(received: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [m for m in received if m["type"] == "job-update" and m["job"]["id"] == job_id]


def as_client_keeps_them(ids: list[int], since: int) -> list[int]:
    """The events a resuming client keeps: it drops an ``event_id`` it already has.

    After a reconnect the server may send again an event the client got on its previous
    socket, but only one at or below ``since`` (the relay published it late, after a layer
    outage or a late commit); every later event is sent once. docs/websocket.md says so.
    """
    kept: list[int] = []
    for event_id in ids:
        if event_id in kept:
            assert event_id <= since, f"event {event_id} above since={since} was sent twice"
            continue
        kept.append(event_id)
    return kept


def only_progress_conflated(live: list[int], logged: list[tuple[int, str]]) -> None:
    """``live`` is the log in order, except progress replaced by a newer progress of the job.

    A socket that falls behind gets a job's queued progress replaced by the newer one (never
    across a status change); on a quiet machine none is. docs/websocket.md, "Delivery guarantees".
    """
    assert live == sorted(set(live)), "out of order or twice"
    delivered = set(live)
    assert delivered <= {event_id for event_id, _ in logged}
    for index, (event_id, kind) in enumerate(logged):
        if event_id in delivered:
            continue
        assert kind == "progress", f"{kind} event {event_id} was not delivered live"
        # The next event of the job that counts: a non-progress one, or a progress delivered.
        after = [later for later in logged[index + 1 :] if later[1] != "progress" or later[0] in delivered]
        assert after, f"the last progress {event_id} was not delivered"
        assert after[0][1] == "progress", f"progress {event_id} dropped, not replaced by a newer one"


def run_scenario(ports: tuple[int, int], token: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A watcher on the first process sees the whole job live; a second client on the other
    process leaves mid-job and comes back with ``since``."""
    watch_url = f"ws://127.0.0.1:{ports[0]}/ws/jobs/?token={token}"
    resume_url = f"ws://127.0.0.1:{ports[1]}/ws/jobs/?token={token}"

    async def scenario() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        watched: list[dict[str, Any]] = []
        resumed: list[dict[str, Any]] = []
        async with connect(watch_url) as watcher:
            welcome = await next_message(watcher)
            assert welcome["type"] == "welcome"
            body = {"type": "demo", "params": {"items": 20, "delay_ms": 100}}
            job = await asyncio.to_thread(http, ports[0], "/api/jobs/", token, body)
            job_id = str(job["id"])

            async with connect(resume_url) as leaver:
                assert (await next_message(leaver))["type"] == "welcome"
                await leaver.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}))
                await until(leaver, lambda m: m.get("kind") == "progress", resumed)
            # Gone mid-job (a few progress events in), then back on a fresh socket with since.
            last = max(m["event_id"] for m in updates_of(resumed, job_id))
            await asyncio.sleep(0.7)
            async with connect(resume_url) as back:
                assert (await next_message(back))["type"] == "welcome"
                await back.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": last}))
                await until(back, lambda m: m.get("job", {}).get("status") in FINAL, resumed)
                await asyncio.sleep(0.3)
                while True:  # anything after the final status
                    try:
                        resumed.append(await next_message(back, 0.3))
                    except TimeoutError:
                        break
            await until(watcher, lambda m: m.get("job", {}).get("status") in FINAL, watched)
        return job_id, watched, resumed

    return asyncio.run(scenario())


def check(job_id: str, watched: list[dict[str, Any]], resumed: list[dict[str, Any]], port: int, token: str) -> None:
    assert Job.objects.get(pk=job_id).status == "completed"
    logged = list(JobEvent.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))
    listed = http(port, f"/api/jobs/{job_id}/events/?limit=500", token)
    assert [row["event_id"] for row in listed["results"]] == logged

    live = updates_of(watched, job_id)
    kinds = list(JobEvent.objects.filter(job_id=job_id).order_by("id").values_list("id", "kind"))
    only_progress_conflated([m["event_id"] for m in live], kinds)  # in order, none twice, none lost
    assert live[-1]["job"]["status"] == "completed"
    progress = [m["job"]["processed_items"] for m in live]
    assert progress == sorted(progress)

    since = next(m["since"] for m in resumed if m["type"] == "subscribed" and m["since"])
    again = as_client_keeps_them([m["event_id"] for m in updates_of(resumed, job_id)], since)
    assert sorted(again) == logged


def test_demo_job_updates_arrive_in_order_and_a_resuming_client_misses_nothing(processes: Any, user: Any) -> None:
    """On the configuration of this run: the embedded default (one daphne, the relay inside
    it), or with REDIS_URL, as CI runs it, two daphne processes behind the monitor's relay
    (the watching and the resuming client use different processes)."""
    token = Token.objects.create(user=user).key
    processes.qcluster()
    if settings.REDIS_URL:
        monitor = processes.start("manage.py", "monitor", name="monitor")
        wait_for(lambda: b"running" in processes.log_of(monitor), timeout=30, message="monitor did not start")
        ports = (start_daphne(processes), start_daphne(processes))
    else:
        port = start_daphne(processes)
        ports = (port, port)
    job_id, watched, resumed = run_scenario(ports, token)
    check(job_id, watched, resumed, ports[0], token)


@pytest.fixture
def throwaway_redis(tmp_path: Any) -> Any:
    """A private redis-server to kill and restart (never the machine's shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)

        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, timeout=10, message="redis-server did not start")

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    start()
    try:
        yield port, start, stop
    finally:
        stop()


def test_when_the_layer_dies_mid_job_resuming_subscribers_lose_nothing(
    processes: Any, user: Any, throwaway_redis: Any
) -> None:
    """The channel layer's Redis is killed while a job runs and started again later: the
    relay keeps what it could not publish, and a client that resumes with ``since``
    ends with exactly the job's events."""
    from jobs import services

    redis_port, start_redis, stop_redis = throwaway_redis
    token = Token.objects.create(user=user).key
    processes.qcluster()  # its broker is this run's, not the Redis that will die
    port = start_daphne(
        processes,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        JOBADMIN_RELAY_IN_WEB="1",
    )
    url = f"ws://127.0.0.1:{port}/ws/jobs/?token={token}"
    job = services.job_enqueue(job_type="demo", params={"items": 30, "delay_ms": 100}, user=user)
    job_id = str(job.id)

    last = 0

    async def scenario() -> list[dict[str, Any]]:
        nonlocal last
        received: list[dict[str, Any]] = []
        async with connect(url) as ws:
            assert (await next_message(ws))["type"] == "welcome"
            await ws.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}))
            await until(ws, lambda m: m.get("kind") == "progress", received)
        stop_redis()  # the layer is gone while the job goes on
        await asyncio.sleep(1.0)
        start_redis()
        last = max(m["event_id"] for m in updates_of(received, job_id))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the web process may need a moment to see the layer again
            attempt: list[dict[str, Any]] = []
            try:
                async with connect(url) as ws:
                    assert (await next_message(ws))["type"] == "welcome"
                    await ws.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": last}))
                    await until(ws, lambda m: m.get("job", {}).get("status") in FINAL, attempt)
                    await keep_listening(ws, attempt, max(CATCH_UP_AFTER) + 1)
                    return received + attempt
            except (OSError, TimeoutError, ConnectionClosed):
                await asyncio.sleep(0.5)
        raise AssertionError("could not resume")

    received = asyncio.run(scenario())
    logged = list(JobEvent.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))
    assert Job.objects.get(pk=job_id).status == "completed"
    kept = as_client_keeps_them([m["event_id"] for m in updates_of(received, job_id)], last)
    assert sorted(kept) == logged
