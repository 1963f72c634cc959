"""``runall`` survives its own death: a SIGKILL of it leaves no orphan, the next ``runall`` starts
cleanly on the same port, and a cluster that starts after a whole run was killed settles that
run's jobs at once (issue 21, item 4) — with real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings

from jobs import services
from jobs.models import EventKind, Job, JobStatus
from tests.conftest import child_env, free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def runall(processes: Any, port: int, data: Path, **env: str) -> Any:
    return processes.start(
        "manage.py",
        "runall",
        "--port",
        str(port),
        name="runall",
        env=child_env(
            JOBADMIN_TEST_JOBTYPES="1",
            JOBADMIN_DATA_DIR=str(data),
            # The test process's key: its wake-ups are read by the run's cluster.
            DJANGO_SECRET_KEY=settings.SECRET_KEY,
            JOBADMIN_SHUTDOWN_GRACE="5",
            **env,
        ),
    )


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/", timeout=2) as response:
            return bool(response.status)
    except urllib.error.HTTPError:
        return True  # an answer all the same
    except OSError:
        return False


def family_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in alive(procs):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def running_job(**wait: Any) -> Job:
    job = services.job_enqueue(job_type="test-resumable", params={})
    return wait_for(
        lambda: (j := reload(job)).status == JobStatus.RUNNING and j.processed_items >= 5 and j,
        timeout=60,
        message="the job never ran",
        **wait,
    )


def test_a_sigkill_of_runall_takes_its_children_with_it_and_the_next_runall_starts_at_once(
    processes: Any, tmp_path: Path, test_job_types: Any
) -> None:
    port = free_port()
    first = runall(processes, port, tmp_path)
    wait_for(lambda: serves(port), timeout=60, message="the first run does not serve")
    job = running_job()
    family = family_of(first.pid)
    assert len(family) >= 5, family  # daphne, monitor, the cluster's main process, sentinel, workers...
    try:
        first.send_signal(signal.SIGKILL)  # runall alone

        # No help from anyone: the parent-death signal stops them, as Ctrl-C would.
        wait_for(lambda: not alive(family), timeout=30, message="the killed run's children outlived it")
        second = runall(processes, port, tmp_path)
        wait_for(lambda: serves(port) or second.poll() is not None, timeout=60, message="the second run never served")
        log = processes.log_of(second).decode(errors="replace")
        assert second.poll() is None, log[-3000:]
        assert "Address already in use" not in log
        # The children stopped as on Ctrl-C: the job was suspended at a checkpoint, and continues.
        done = wait_for(
            lambda: (j := reload(job)).status == JobStatus.COMPLETED and j, timeout=60, message="not continued"
        )
        assert done.processed_items == 80
        assert EventKind.SUSPENDED in set(job.events.values_list("kind", flat=True))
    finally:
        kill_all(family)


def test_a_cluster_that_starts_after_a_whole_run_was_killed_settles_its_jobs_at_once(
    processes: Any, tmp_path: Path, test_job_types: Any
) -> None:
    port = free_port()
    # The stall sweep would take ten minutes: only the start-up can free the job in time.
    first = runall(processes, port, tmp_path, JOBADMIN_STALL_THRESHOLD="600")
    job = running_job()
    family = family_of(first.pid)
    cursor = reload(job).processed_items
    for proc in [psutil.Process(first.pid), *family]:  # everything at once: nothing stops gracefully
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_for(lambda: not alive(family), timeout=10, message="SIGKILL did not kill")
    dead = reload(job)
    assert dead.status == JobStatus.RUNNING, "killed, nothing could settle it"
    try:
        started = time.monotonic()
        runall(processes, port, tmp_path, JOBADMIN_STALL_THRESHOLD="600")
        again = wait_for(
            lambda: (j := reload(job)).status != JobStatus.RUNNING or j.worker != dead.worker,
            timeout=60,
            message="the dead run's job still holds its worker",
        )
        assert again
        assert time.monotonic() - started < 60
        done = wait_for(
            lambda: (j := reload(job)).status == JobStatus.COMPLETED and j, timeout=60, message="not continued"
        )
        stalled = job.events.filter(kind=EventKind.STALLED).get()
        assert "is gone: found when a cluster started" in stalled.payload["error"]
        continued = job.events.filter(kind=EventKind.STARTED).order_by("id").last()
        assert continued is not None
        assert continued.payload["continued_from"]["cursor"] >= cursor - 5
        assert done.attempts == 2
    finally:
        kill_all(family)


def test_runall_waits_for_an_earlier_runs_leftovers_and_names_who_holds_its_port(tmp_path: Path, settings: Any) -> None:
    import json
    import socket
    import subprocess

    from django.core.management import CommandError, call_command

    from jobadmin.management.commands.runall import port_holder, stop_leftovers

    record = tmp_path / "runall.json"
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        record.write_text(json.dumps({"pid": 1, "groups": [leftover.pid]}))
        said: list[str] = []
        assert stop_leftovers(record, started_before=time.time() + 1, grace=5, say=said.append) == 1
        assert leftover.wait(timeout=5) is not None
        assert said
        assert str(leftover.pid) in said[0]
    finally:
        leftover.kill()
        leftover.wait()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        holder = port_holder("127.0.0.1", port)
        assert holder is not None
        assert f"pid {os.getpid()}" in holder
        settings.JOBADMIN_DATA_DIR = tmp_path
        with pytest.raises(CommandError, match=f"Cannot listen on 127.0.0.1:{port}: .*pid {os.getpid()}"):
            call_command("runall", "--port", str(port))
    assert port_holder("127.0.0.1", port) is None
