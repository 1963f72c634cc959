"""``manage.py jobs``: watch in a pseudo-terminal with a real worker, list, enqueue, cancel and
retry through the same services and policy as the API, with the documented exit codes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from jobs import policy, services
from jobs.models import EventKind, Job, JobEvent, JobStatus
from tests.conftest import ROOT, child_env, grant
from tests.factories import JobFactory, UserFactory


def jobs_cli(*args: str) -> tuple[int, str]:
    """``manage.py jobs ARGS`` in this process: (exit code, what it printed)."""
    out = StringIO()
    try:
        call_command("jobs", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


# --- enqueue -------------------------------------------------------------------------------------
def test_enqueue_parses_values_as_json_where_they_parse_and_records_the_actor(user: Any) -> None:
    code, out = jobs_cli("enqueue", "demo", "items=3", "delay_ms=0", "--as", user.username, "--json")
    assert code == 0, out
    job = Job.objects.get()
    assert job.params == {"items": 3, "delay_ms": 0, "fail_at": None}
    assert job.user == user
    assert json.loads(out)["id"] == str(job.pk)
    assert JobEvent.objects.get(job=job, kind=EventKind.CREATED).actor == user


@pytest.mark.django_db(transaction=True)
def test_enqueue_with_bad_input_exits_2_with_the_field_errors_and_queues_nothing() -> None:
    # A real process, for the real exit status and stderr (transaction=True: the test holds no
    # transaction open on the database the process reads).
    proc = subprocess.run(
        [sys.executable, "manage.py", "jobs", "enqueue", "demo", "items=0", "delay_ms=slow"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "params.items: Ensure this value is greater than or equal to 1." in proc.stderr
    assert "params.delay_ms: A valid integer is required." in proc.stderr
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["enqueue", "no-such-type"], 2, "Unknown job type"),
        (["enqueue", "demo", "items"], 2, "is not key=value"),
        (["enqueue", "demo", "colour=red"], 2, "params.colour: Unknown parameter."),
        (["enqueue", "demo", "--queue", "nowhere"], 2, "queue:"),
        (["enqueue", "purge-history"], 3, "jobs.purge_history"),
        (["enqueue", "demo", "--priority", "50"], 3, "jobs.change_job"),
    ],
)
def test_enqueue_refusals_have_their_exit_codes_and_queue_nothing(
    user: Any, args: list[str], code: int, message: str
) -> None:
    services.queue_ensure_defaults()
    got, out = jobs_cli(*args, "--as", user.username)
    assert (got, message in out) == (code, True), out
    assert not Job.objects.exists()


def test_an_unknown_or_inactive_actor_exits_3(db: Any) -> None:
    UserFactory(username="gone", is_active=False)
    assert jobs_cli("list", "--as", "nobody")[0] == 3
    assert jobs_cli("list", "--as", "gone")[0] == 3


# --- list ----------------------------------------------------------------------------------------
def test_list_shows_what_the_actor_may_see_filtered_like_the_api(user: Any, other_user: Any) -> None:
    mine = JobFactory.create(user=user, type="demo", status=JobStatus.FAILED)
    JobFactory.create(user=user, type="export-jobs", status=JobStatus.COMPLETED)
    theirs = JobFactory.create(user=other_user, type="demo", status=JobStatus.FAILED)
    code, out = jobs_cli("list", "--as", user.username, "--status", "failed", "--json")
    assert code == 0
    assert [row["id"] for row in json.loads(out)] == [str(mine.pk)]
    viewer = grant(UserFactory(is_staff=True), policy.VIEW_JOBS)
    code, out = jobs_cli("list", "--as", viewer.username, "--type", "demo", "--user", other_user.username, "--json")
    assert [row["id"] for row in json.loads(out)] == [str(theirs.pk)]
    code, out = jobs_cli("list", "--limit", "1", "--json")  # the system sees every job
    assert len(json.loads(out)) == 1
    code, out = jobs_cli("list", "--as", user.username)
    assert code == 0
    assert "export-jobs" in out
    assert str(theirs.pk) not in out


# --- cancel and retry ----------------------------------------------------------------------------
def test_cancel_and_retry_go_through_the_services_with_the_actor(user: Any) -> None:
    job = JobFactory.create(user=user, status=JobStatus.QUEUED)
    assert jobs_cli("cancel", str(job.pk), "--as", user.username)[0] == 0
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert JobEvent.objects.filter(job=job, kind=EventKind.CANCELLED).get().actor == user
    assert jobs_cli("retry", str(job.pk), "--as", user.username)[0] == 0
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_an_illegal_transition_exits_4_with_a_clear_message(user: Any) -> None:
    job = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    code, out = jobs_cli("cancel", str(job.pk), "--as", user.username)
    assert (code, out) == (4, "Cannot cancel a job that is completed.")
    code, out = jobs_cli("retry", str(job.pk), "--as", user.username)
    assert code == 4
    assert "completed" in out
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_another_users_job_is_not_found_and_acting_on_it_needs_change_job(user: Any, other_user: Any) -> None:
    job = JobFactory.create(user=other_user, status=JobStatus.QUEUED)
    assert jobs_cli("cancel", str(job.pk), "--as", user.username) == (3, f"No job {job.pk} that you may see.")
    assert jobs_cli("cancel", "not-a-uuid", "--as", user.username)[0] == 3
    viewer = grant(UserFactory(is_staff=True), policy.VIEW_JOBS)
    assert jobs_cli("cancel", str(job.pk), "--as", viewer.username) == (3, policy.ACT_ON_OTHERS)
    changer = grant(UserFactory(is_staff=True), policy.CHANGE_JOBS)
    assert jobs_cli("cancel", str(job.pk), "--as", changer.username)[0] == 0
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


# --- watch, in a pseudo-terminal, with a real worker -------------------------------------------------
def _watch_in_a_terminal(*args: str, timeout: float = 90) -> tuple[int, str]:
    """Run ``manage.py jobs watch ARGS`` on a pty: (exit status, everything it drew)."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "jobs", "watch", *args],
        cwd=ROOT,
        env=child_env(TERM="xterm-256color", COLUMNS="120", LINES="40"),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            output.extend(chunk)
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_watch_draws_live_bars_until_the_jobs_end_and_exits_by_their_outcome(processes: Any, user: Any) -> None:
    processes.qcluster()
    ok = services.job_enqueue(job_type="demo", params={"items": 40, "delay_ms": 150}, user=user)
    failing = services.job_enqueue(job_type="demo", params={"items": 40, "delay_ms": 200, "fail_at": 35}, user=user)
    # With no ids: the actor's active jobs, both; one of them fails, so the exit status is 1.
    status, drawn = _watch_in_a_terminal("--as", user.username)
    assert status == 1, drawn
    assert "\x1b[?25l" in drawn, "no live display (rich hides the cursor while it draws)"
    assert any(f"{n}/40" in drawn for n in range(1, 35)), drawn  # a bar part way, drawn while it ran
    assert "Processed items 1-40." in drawn  # a log line of the job
    assert f"{ok.pk} demo completed" in drawn
    assert f"{failing.pk} demo failed: RuntimeError: Demo failure at item 35 of 40." in drawn
    assert "1 of 2 jobs did not complete." in drawn
    assert Job.objects.get(pk=failing.pk).status == JobStatus.FAILED
    # One job by its id, which completes: 0.
    again = services.job_enqueue(job_type="demo", params={"items": 40, "delay_ms": 200}, user=user)
    status, drawn = _watch_in_a_terminal(str(again.pk), "--as", user.username)
    assert status == 0, drawn
    assert Job.objects.get(pk=again.pk).status == JobStatus.COMPLETED
    assert any(f"{n}/40" in drawn for n in range(1, 40)), drawn
    assert f"{again.pk} demo completed" in drawn


def test_watch_of_jobs_already_finished_ends_at_once(user: Any) -> None:
    done = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    cancelled = JobFactory.create(user=user, status=JobStatus.CANCELLED)
    assert jobs_cli("watch", str(done.pk), "--as", user.username)[0] == 0
    assert jobs_cli("watch", str(done.pk), str(cancelled.pk), "--as", user.username) == (
        1,
        "1 of 2 jobs did not complete.",
    )
    assert jobs_cli("watch", "--as", user.username) == (0, "No jobs to watch.\n")
    assert jobs_cli("watch", str(done.pk), "--all")[0] == 2
