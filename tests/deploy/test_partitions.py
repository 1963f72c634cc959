"""Partitions: a link that goes silent, not one that breaks (issue 21, items 1, 2 and 5).

Real ``qcluster``, ``monitor`` and ``daphne`` processes; between some of them and
PostgreSQL a proxy of the test's own (``tests.deploy.blackhole``) that is switched to a
black hole: it accepts and reads every byte and forwards none, closes nothing, so no
reset reaches anyone and the kernel keeps ACKing (neither TCP keepalives nor
``tcp_user_timeout`` notice). Each partition lasts longer than the outage grace.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from jobs import services
from jobs.models import EventKind, Job, JobEvent, JobStatus, QueueSlot
from live.models import RelayState
from monitoring.health import check_workers, monitor_leader
from tests.conftest import Processes, child_env, wait_for
from tests.deploy.blackhole import BlackHoleProxy
from tests.jobs.test_processes import processed_ranges, reload, wait_job
from tests.live.test_live_e2e import start_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# The grace and the timings the processes of these tests run with: a wait for PostgreSQL
# ends within QUERY_TIMEOUT, a worker gives its job up GRACE after its last write, the sweep
# takes a job whose heartbeat is STALL old; a partition lasts CUT.
QUERY_TIMEOUT, GRACE, STALL, CUT = 1.5, 3.0, 6.0, 10.0
TIMINGS = {
    "JOBADMIN_DB_QUERY_TIMEOUT": str(QUERY_TIMEOUT),
    "JOBADMIN_DB_OUTAGE_GRACE": str(GRACE),
    "JOBADMIN_STALL_THRESHOLD": str(STALL),
    "DATABASE_CONNECT_TIMEOUT": "1",
    "JOBADMIN_TEST_JOBTYPES": "1",
}
LEASE = 3.0  # tests/settings.py


@pytest.fixture
def pg_proxy() -> Iterator[BlackHoleProxy]:
    if connection.vendor != "postgresql":
        pytest.skip("a partition from PostgreSQL (CI sets DATABASE_URL)")
    conf = connection.settings_dict
    proxy = BlackHoleProxy(str(conf["HOST"] or "127.0.0.1"), int(conf["PORT"] or 5432)).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def through(proxy: BlackHoleProxy) -> str:
    """A DATABASE_URL for this run's database by way of ``proxy``."""
    conf = connection.settings_dict
    return f"postgres://{conf['USER']}@127.0.0.1:{proxy.port}/{conf['NAME']}"


def steady(items: int, delay_ms: int = 100) -> Job:
    return services.job_enqueue(job_type="test-steady", params={"items": items, "delay_ms": delay_ms})


def ends_once(job: Job) -> None:
    """Completed, with one terminal event, and no item's recorded work done twice: each run
    continues right after the work recorded before it (its ``started`` event's snapshot), and
    the last one ends the job. (A run that lost the job logs nothing: its log is refused.)"""
    assert job.status == JobStatus.COMPLETED, (job.status, job.error)
    terminal = [k for k in job.events.values_list("kind", flat=True) if k in (EventKind.COMPLETED, EventKind.FAILED)]
    assert terminal == [EventKind.COMPLETED]
    ranges = processed_ranges(job)
    starts = [e.payload["job"]["processed_items"] for e in job.events.filter(kind=EventKind.STARTED).order_by("id")]
    assert ranges, "the last run logged nothing"
    assert ranges[-1] == (starts[-1] + 1, job.total_items), (ranges, starts)
    assert all(later[0] > earlier[1] for earlier, later in zip(ranges, ranges[1:], strict=False)), ranges


@pytest.mark.usefixtures("requires_redis")
def test_a_worker_group_black_holed_from_postgresql_gives_its_jobs_up_within_the_grace_and_none_runs_twice(
    processes: Processes, pg_proxy: BlackHoleProxy, test_job_types: None
) -> None:
    cut_off = processes.qcluster(DATABASE_URL=through(pg_proxy), **TIMINGS)
    stranded = [steady(80), steady(80)]  # 8 s each: running on the cut-off group when the link goes
    for job in stranded:
        wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)
    cut_workers = {reload(job).worker for job in stranded}
    processes.qcluster(**TIMINGS)
    processes.start("manage.py", "monitor", env=child_env(**TIMINGS), name="monitor")
    others = [steady(30) for _ in range(6)]

    pg_proxy.cut()
    cut_at = time.monotonic()
    # Health names the cut-off group's processes as soon as their waits end (item 5).
    unreachable = wait_for(
        lambda: check_workers().get("database_unreachable"), timeout=GRACE + 5, message="health never said it"
    )
    assert all(who.startswith("qcluster ") for who in unreachable), unreachable
    print(f"health names {len(unreachable)} cut-off process(es) {time.monotonic() - cut_at:.1f} s after the cut")
    # The stall sweep gives each stranded job to the healthy group, which continues it.
    for job in stranded:
        moved = wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.worker not in cut_workers, timeout=30)
        print(f"job {job.pk} runs elsewhere {time.monotonic() - cut_at:.1f} s after the cut")
        assert moved.attempts == 2
    taken_after = time.monotonic() - cut_at
    time.sleep(max(0.0, CUT - (time.monotonic() - cut_at)))
    log = processes.log_of(cut_off).decode(errors="replace")
    # Every thread of the cut-off group noticed within the grace: it gave its jobs up.
    assert log.count("gives the job up") >= len(stranded), log[-4000:]
    assert "JOBADMIN_DB_QUERY_TIMEOUT" in log, log[-4000:]
    pg_proxy.heal()

    for job in [*stranded, *others]:
        done = wait_job(job, lambda j: j.status in (JobStatus.COMPLETED, JobStatus.FAILED), timeout=60)
        ends_once(done)
    # The stale attempts wrote nothing after the heal: no event of a first attempt after the second began.
    for job in stranded:
        second = JobEvent.objects.get(job=job, kind=EventKind.STARTED, payload__attempt=2).pk
        late = JobEvent.objects.filter(job=job, pk__gt=second, payload__job__attempts=1)
        assert not late.exists(), list(late.values("kind", "payload"))
    assert not QueueSlot.objects.exclude(job=None).exists()
    assert taken_after < STALL + 6, f"the stranded jobs moved {taken_after:.1f} s after the cut"


@pytest.fixture
def redis_proxy(requires_redis: None) -> Iterator[BlackHoleProxy]:
    from urllib.parse import urlsplit

    from django.conf import settings

    url = urlsplit(settings.REDIS_URL)
    proxy = BlackHoleProxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_worker_group_black_holed_from_redis_finishes_its_jobs_and_every_job_ends_once(
    processes: Processes, redis_proxy: BlackHoleProxy, test_job_types: None
) -> None:
    from urllib.parse import urlsplit

    from django.conf import settings

    db = urlsplit(settings.REDIS_URL).path or "/0"
    cut_off = processes.qcluster(REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}{db}", **TIMINGS)
    running = [steady(60), steady(60)]  # 6 s each, on the cut-off group when its Redis goes silent
    for job in running:
        wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)
    processes.qcluster(**TIMINGS)
    processes.start("manage.py", "monitor", env=child_env(**TIMINGS), name="monitor")

    redis_proxy.cut()
    others = [steady(20) for _ in range(6)]  # their wake-ups reach the healthy group only
    # The database is there: the cut-off group's jobs go on and end, in their first attempt.
    for job in running:
        done = wait_job(job, lambda j: j.status in (JobStatus.COMPLETED, JobStatus.FAILED), timeout=30)
        ends_once(done)
        assert done.attempts == 1
    time.sleep(max(0.0, CUT - 6))
    redis_proxy.heal()

    for job in others:
        done = wait_job(job, lambda j: j.status in (JobStatus.COMPLETED, JobStatus.FAILED), timeout=60)
        ends_once(done)
    assert cut_off.poll() is None, processes.log_of(cut_off).decode(errors="replace")[-3000:]
    assert not QueueSlot.objects.exclude(job=None).exists()


class LayerWatch:
    """Every relay batch that reaches the channel layer, with the time it arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> LayerWatch:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        from channels.layers import get_channel_layer

        from live.relay import EVENTS_GROUP

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(EVENTS_GROUP, channel)
        self._ready.set()
        while not self._stop.is_set():
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.5)
            except TimeoutError:
                continue
            ids = [int(event["id"]) for event in message.get("events", []) if "id" in event]
            self.arrivals.append((time.monotonic(), ids))

    def ids(self) -> set[int]:
        return {i for _, batch in self.arrivals for i in batch}


@pytest.mark.usefixtures("requires_redis")
def test_a_leading_monitor_black_holed_from_postgresql_is_replaced_within_the_lease_and_live_updates_flow(
    processes: Processes, pg_proxy: BlackHoleProxy, test_job_types: None
) -> None:
    timings = {**TIMINGS, "JOBADMIN_MONITOR_LEASE": str(LEASE)}
    processes.qcluster(**timings)
    cut_off = processes.start(
        "manage.py", "monitor", env=child_env(DATABASE_URL=through(pg_proxy), **timings), name="cut-off monitor"
    )
    wait_for(lambda: (monitor_leader() or {}).get("pid") == cut_off.pid, timeout=30, message="no leader")
    first_term = monitor_leader()["term"]  # type: ignore[index]
    standby = processes.start("manage.py", "monitor", env=child_env(**timings), name="standby")
    watch = LayerWatch().start()
    # The leader's relay has its watermark (a relay without one starts at the latest event).
    wait_for(RelayState.objects.exists, timeout=30, message="the relay never started")
    try:
        job = steady(150, 100)  # 15 s of progress events
        wait_job(job, lambda j: j.status == JobStatus.RUNNING and j.processed_items >= 5, timeout=30)
        time.sleep(2)

        pg_proxy.cut()
        cut_at = time.monotonic()
        wait_for(lambda: (monitor_leader() or {}).get("pid") == standby.pid, timeout=4 * LEASE, message="no takeover")
        took_over = time.monotonic() - cut_at
        leader = monitor_leader()
        assert leader is not None
        assert leader["term"] > first_term
        # Live updates flow again through the new leader's relay while the old one is cut off.
        wait_for(lambda: any(at > cut_at + took_over for at, _ in watch.arrivals), timeout=10, message="no relay")
        time.sleep(max(0.0, CUT - (time.monotonic() - cut_at)))
        log = processes.log_of(cut_off).decode(errors="replace")
        assert "stopped leading" in log or cut_off.poll() is not None, log[-3000:]
        pg_proxy.heal()

        done = wait_job(job, lambda j: j.status in (JobStatus.COMPLETED, JobStatus.FAILED), timeout=60)
        ends_once(done)
        last = JobEvent.objects.filter(job=job).order_by("-pk").values_list("pk", flat=True).first()
        wait_for(lambda: last in watch.ids(), timeout=15, message="the job's last event never reached the layer")
    finally:
        watch.stop()
    # Every event of the job was published, and the longest silence of the layer was one takeover.
    missing = set(JobEvent.objects.filter(job=job).values_list("pk", flat=True)) - watch.ids()
    assert not missing, (
        [(e.pk, e.kind, e.created_at.isoformat()) for e in JobEvent.objects.filter(pk__in=missing)],
        [(round(at - cut_at, 2), ids[:1], ids[-1:]) for at, ids in watch.arrivals if ids],
    )
    times = [at for at, _ in watch.arrivals if at > cut_at - 1]
    silence = max(b - a for a, b in zip(times, times[1:], strict=False))
    print(f"takeover {took_over:.1f} s after the cut (lease {LEASE} s); longest silence {silence:.1f} s")
    assert took_over < LEASE + 3
    assert silence < LEASE + 4


def first_200(port: int, token: str, *, budget: float) -> float:
    """Seconds until ``/api/jobs/`` answers 200; every other answer must come at once."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        asked = time.monotonic()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/jobs/", headers={"Authorization": f"Token {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                json.loads(response.read())
                return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            code = exc.code
        assert code == 503, code
        waited = time.monotonic() - asked
        assert waited < 2.5, f"a 503 took {waited:.1f} s"
        time.sleep(0.1)
    raise AssertionError(f"no 200 within {budget} s")


def test_the_web_process_answers_503_at_once_while_the_database_is_away_and_serves_within_5_s_of_its_return(
    processes: Processes, database_block: Any, user: Any
) -> None:
    from rest_framework.authtoken.models import Token

    from tests.conftest import grant

    grant(user, "jobs.view_job")
    token = Token.objects.create(user=user).key
    port = start_daphne(processes)
    assert first_200(port, token, budget=30) < 30
    database_block.close()
    try:
        time.sleep(0.5)
        blocked_at = time.monotonic()
        while time.monotonic() - blocked_at < 5:
            asked = time.monotonic()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/jobs/", headers={"Authorization": f"Token {token}"}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 503
            assert time.monotonic() - asked < 2.5, "a 503 while the database is away must come at once"
            time.sleep(0.2)
    finally:
        database_block.open()
    back = first_200(port, token, budget=30)
    print(f"first 200 {back:.2f} s after the database returned")
    assert back <= 5
