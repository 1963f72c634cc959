"""SSE and long-poll end to end: real daphne, a real qcluster, real HTTP clients (httpx).

On the embedded default one daphne runs the relay itself; with REDIS_URL (CI: Redis and
PostgreSQL) the relay runs in ``manage.py monitor`` and the clients use two daphne processes
(the resuming client another one than the watcher), as in test_live_e2e.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from jobs.models import Job, JobEvent
from live.longpoll import RECHECK
from live.streams import HOLE_GRACE
from tests.conftest import wait_for
from tests.live.test_live_e2e import FINAL, only_progress_conflated, start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream: each event as {"id", "event", "data"}; comments as {"comment"}."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"] = json.loads(value)
            else:
                event[name] = value


def start_web(processes: Any, count: int = 2, **env: str) -> list[int]:
    processes.qcluster()
    if settings.REDIS_URL:
        monitor = processes.start("manage.py", "monitor", name="monitor")
        wait_for(lambda: b"running" in processes.log_of(monitor), timeout=30, message="monitor did not start")
        return [start_daphne(processes, **env) for _ in range(count)]
    port = start_daphne(processes, **env)
    return [port] * count


def enqueue(port: int, token: str, items: int = 20, delay_ms: int = 100) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/jobs/",
        json={"type": "demo", "params": {"items": items, "delay_ms": delay_ms}},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def logged_ids(port: int, token: str, job_id: str) -> list[int]:
    listed = httpx.get(
        f"http://127.0.0.1:{port}/api/jobs/{job_id}/events/?limit=500",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    ).json()
    assert not listed["has_more"]
    return [row["event_id"] for row in listed["results"]]


def test_the_job_stream_shows_a_demo_jobs_events_in_order_and_a_resumed_one_misses_nothing(
    processes: Any, user: Any
) -> None:
    """A watcher of ``/api/jobs/<id>/stream/`` gets the job's events in order and the stream ends
    after ``completed``; a second client drops mid-job and resumes with ``Last-Event-ID`` (on the
    other web process with Redis): it ends with exactly the events ``/api/jobs/<id>/events/`` lists,
    none twice. Asked again after the end, the stream answers 204 (an EventSource stops)."""
    token = Token.objects.create(user=user).key
    watch_port, resume_port = start_web(processes)
    job_id = enqueue(watch_port, token)
    watched: list[dict[str, Any]] = []

    def watch() -> None:
        with httpx.stream(
            "GET", f"http://127.0.0.1:{watch_port}/api/jobs/{job_id}/stream/?token={token}", timeout=60
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            watched.extend(event for event in sse_events(response.iter_lines()) if "event" in event)

    watcher = threading.Thread(target=watch)
    watcher.start()

    url = f"http://127.0.0.1:{resume_port}/api/jobs/{job_id}/stream/"
    headers = {"Authorization": f"Token {token}"}
    resumed: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        for event in sse_events(response.iter_lines()):
            if "event" in event:
                resumed.append(event)
                if event["data"].get("kind") == "progress":
                    break  # dropped mid-job
    last = resumed[-1]["id"]
    time.sleep(0.7)
    with httpx.stream("GET", url, headers={**headers, "Last-Event-ID": last}, timeout=60) as response:
        assert response.status_code == 200
        resumed.extend(event for event in sse_events(response.iter_lines()) if "event" in event)
    watcher.join(60)
    assert not watcher.is_alive(), "the watched stream did not end after the job's final status"

    assert Job.objects.get(pk=job_id).status == "completed"
    logged = logged_ids(watch_port, token, job_id)
    assert logged == list(JobEvent.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))
    # The watcher: the log in order, the stream's last event the completion.
    kinds = list(JobEvent.objects.filter(job_id=job_id).order_by("id").values_list("id", "kind"))
    only_progress_conflated([int(e["id"]) for e in watched], kinds)
    assert watched[-1]["data"]["job"]["status"] == "completed"
    assert all(e["event"] == "job-update" and e["data"]["event_id"] == int(e["id"]) for e in watched)
    # The resumed client: exactly the log, none twice.
    assert [int(e["id"]) for e in resumed] == logged

    again = httpx.get(url, headers={**headers, "Last-Event-ID": str(logged[-1])}, timeout=10)
    assert again.status_code == 204


# An answer waits for an id below its events that may still commit (live.streams.settled): up
# to HOLE_GRACE after the event above it, seen at the next read (RECHECK). The suite's log is
# full of ids that rolled-back tests took, so a job's first events sit above such holes: seen
# in CI, 11 s for a 2 s job. Within that and a margin, well before the wait's end, is "at once".
WAIT = 30  # the most a poll may ask
ANSWERED_WITHIN = HOLE_GRACE + RECHECK + 8


def test_long_poll_gives_exactly_the_log_to_a_client_that_polls_and_one_that_comes_back_later(
    processes: Any, user: Any
) -> None:
    """``GET /api/events/`` answered as soon as there are events (not after ``wait``), in order:
    a client polling with ``after=last_event_id`` through the whole job, and one that stops
    mid-job and comes back, each end with exactly the job's events, none twice."""
    token = Token.objects.create(user=user).key
    ports = start_web(processes)
    job_id = enqueue(ports[0], token)
    headers = {"Authorization": f"Token {token}"}

    def poll_until_final(port: int, after: int, stop_after: int | None = None) -> tuple[list[dict[str, Any]], int]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = httpx.get(
                f"http://127.0.0.1:{port}/api/events/",
                params={"channels": f"job:{job_id}", "after": after, "wait": WAIT},
                headers=headers,
                timeout=WAIT + 10,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            if body["events"]:
                assert time.monotonic() - started < ANSWERED_WITHIN, "answered only after the wait"
            got.extend(body["events"])
            after = body["last_event_id"]
            if any(m["job"]["status"] in FINAL for m in body["events"]):
                break
            if stop_after is not None and len(got) >= stop_after:
                break
        return got, after

    first = httpx.get(f"http://127.0.0.1:{ports[0]}/api/events/", params={"channels": f"job:{job_id}"}, headers=headers)
    assert first.json()["events"] == []
    start = 0
    steady, _ = poll_until_final(ports[0], start)
    part, where = poll_until_final(ports[1], start, stop_after=3)
    time.sleep(1.0)
    rest, _ = poll_until_final(ports[1], where)

    logged = logged_ids(ports[0], token, job_id)
    assert [m["event_id"] for m in steady] == logged
    assert [m["event_id"] for m in part + rest] == logged


def test_open_streams_hold_no_thread_and_end_when_access_is_revoked(processes: Any, user: Any) -> None:
    """Twenty open SSE streams add no thread to daphne (the request's thread is let go once the
    response streams); deleting the token they authenticated with ends them within the
    keep-alive interval, with an ``error`` event, and a new one is refused (401)."""
    import psutil

    token = Token.objects.create(user=user).key
    port = start_daphne(processes, JOBADMIN_SSE_KEEPALIVE="1")
    daphne = next(psutil.Process(p.pid) for p, _ in processes.procs)
    url = f"http://127.0.0.1:{port}/api/stream/?channels=user:{user.pk}&token={token}"
    assert httpx.get(f"http://127.0.0.1:{port}/api/health/", timeout=10).status_code == 200
    # One stream first: what a process starts once (the hub, the relay's threads) is then running.
    ended: list[dict[str, Any]] = []

    def hold() -> None:
        with httpx.stream("GET", url, timeout=60) as response:
            assert response.status_code == 200
            for event in sse_events(response.iter_lines()):
                if event.get("event") == "error":
                    ended.append(event["data"])

    first = threading.Thread(target=hold)
    first.start()
    time.sleep(2.0)
    before = daphne.num_threads()
    holders = [threading.Thread(target=hold) for _ in range(20)]
    for thread in holders:
        thread.start()
    time.sleep(3.0)
    during = daphne.num_threads()
    assert during <= before + 2, f"{before} threads before, {during} with 20 more streams open"

    Token.objects.filter(key=token).delete()
    for thread in [first, *holders]:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in [first, *holders]), "a stream outlived its token"
    assert len(ended) == 21
    assert all(data["code"] == "forbidden" for data in ended)
    assert httpx.get(url, timeout=10).status_code == 401


def test_a_stream_resumed_with_last_event_id_continues_where_it_stopped_on_several_channels(
    processes: Any, user: Any
) -> None:
    """``/api/stream/`` over the user's channel: two jobs, a drop after the first job's events, a
    resume with ``Last-Event-ID``: the events of both jobs, each once, in the log's order."""
    token = Token.objects.create(user=user).key
    ports = start_web(processes)
    url = f"http://127.0.0.1:{ports[1]}/api/stream/"
    headers = {"Authorization": f"Token {token}"}
    first_job = enqueue(ports[0], token, items=5, delay_ms=50)
    wait_for(lambda: Job.objects.get(pk=first_job).status == "completed", timeout=60)
    got: list[dict[str, Any]] = []
    with httpx.stream("GET", url, params={"since": 0}, headers=headers, timeout=60) as response:
        for event in sse_events(response.iter_lines()):
            if "event" in event:
                got.append(event)
                if event["data"]["job"]["status"] == "completed":
                    break
    second_job = enqueue(ports[0], token, items=5, delay_ms=50)
    wait_for(lambda: Job.objects.get(pk=second_job).status == "completed", timeout=60)
    with httpx.stream("GET", url, params={"since": 0}, headers={**headers, "Last-Event-ID": got[-1]["id"]}) as response:
        for event in sse_events(response.iter_lines()):
            if "event" in event:
                got.append(event)
                if event["data"]["job"]["id"] == second_job and event["data"]["job"]["status"] == "completed":
                    break
    ids = [int(e["id"]) for e in got]
    logged = list(JobEvent.objects.filter(job__user=user).order_by("id").values_list("id", flat=True))
    assert ids == logged
