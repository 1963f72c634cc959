"""The CLI bridge (jobs.bridge): the ``management-command`` type runs an allowed command in a
subprocess, streams its lines as the job's log, keeps its exit status and honours cancel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs import policy, services
from jobs.models import EventKind, Job, JobEvent, JobResult, JobStatus
from tests.conftest import grant, wait_for
from tests.factories import UserFactory

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@pytest.fixture
def allowed(settings: Any) -> None:
    settings.JOBADMIN_COMMANDS = ["bridge_echo", "check"]  # bridge_echo: tests/bridge


@pytest.fixture
def runner(db: Any) -> Any:
    return grant(UserFactory(), policy.RUN_MANAGEMENT_COMMAND)


def _enqueue(user: Any, **params: Any) -> Job:
    return services.job_enqueue(job_type="management-command", params=params, user=user, actor=user)


def _detail(refused: Any) -> Any:
    return refused.value.detail


def _log_lines(job: Job) -> list[str]:
    events = JobEvent.objects.filter(job=job, kind=EventKind.LOG).order_by("id")
    return [line["message"] for event in events for line in event.payload["lines"]]


# --- refused before anything is queued ------------------------------------------------------------
@pytest.mark.usefixtures("allowed")
def test_a_command_not_in_the_setting_is_refused_with_a_field_error(runner: Any) -> None:
    with pytest.raises(serializers.ValidationError) as refused:
        _enqueue(runner, command="migrate", args=[])
    assert "JOBADMIN_COMMANDS" in str(_detail(refused)["command"][0])
    assert not Job.objects.exists()


def test_with_the_setting_empty_no_command_is_allowed(runner: Any) -> None:
    with pytest.raises(serializers.ValidationError) as refused:
        _enqueue(runner, command="bridge_echo", args=["1"])
    assert "command" in _detail(refused)
    assert not Job.objects.exists()


@pytest.mark.usefixtures("allowed")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["many"], "invalid int value: 'many'"),
        ([], "the following arguments are required: lines"),
        (["1", "--bogus"], "unrecognized arguments: --bogus"),
        (["1", "--settings=elsewhere"], "--settings is not allowed"),
        (["1", "--pythonpath", "/tmp"], "--pythonpath is not allowed"),
        (["--help"], "--help only prints and exits"),
    ],
)
def test_bad_arguments_are_refused_by_the_commands_own_parser(runner: Any, args: list[str], message: str) -> None:
    with pytest.raises(serializers.ValidationError) as refused:
        _enqueue(runner, command="bridge_echo", args=args)
    assert message in str(_detail(refused)["args"][0])
    assert not Job.objects.exists()


@pytest.mark.usefixtures("allowed")
def test_the_api_answers_bad_arguments_with_a_400_under_params(runner: Any) -> None:
    client = APIClient()
    client.force_authenticate(runner)
    body = {"type": "management-command", "params": {"command": "check", "args": ["--fail-level", "LOUD"]}}
    response = client.post("/api/jobs/", body, format="json")
    assert response.status_code == 400, response.content
    assert "invalid choice: 'LOUD'" in str(response.json()["params"]["args"])
    assert not Job.objects.exists()


@pytest.mark.usefixtures("allowed")
def test_the_admin_form_answers_bad_arguments_with_a_form_error(client: Any, superuser: Any) -> None:
    services.queue_ensure_defaults()
    client.force_login(superuser)
    url = reverse("admin:jobs_job_enqueue_type", args=["management-command"])
    form = {"command": "check", "args": '["--fail-level", "LOUD"]', "_queue": "default", "_priority": "0"}
    response = client.post(url, form)
    assert response.status_code == 400
    assert "invalid choice: 'LOUD'" in response.context["form"].errors["args"][0]
    assert not Job.objects.exists()
    response = client.post(url, {**form, "args": '["--fail-level", "ERROR"]'})
    assert response.status_code == 302
    assert Job.objects.get().params == {"command": "check", "args": ["--fail-level", "ERROR"]}


@pytest.mark.usefixtures("allowed")
def test_without_the_permission_the_bridge_is_refused(db: Any) -> None:
    staff = UserFactory(is_staff=True)
    with pytest.raises(policy.AccessDenied) as refused:
        _enqueue(staff, command="bridge_echo", args=["1"])
    assert refused.value.permission == policy.RUN_MANAGEMENT_COMMAND
    assert not Job.objects.exists()


# --- run by a real worker ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_the_command_runs_and_its_lines_reach_the_log_while_it_runs(processes: Any, settings: Any) -> None:
    settings.JOBADMIN_COMMANDS = ["bridge_echo"]
    user = grant(UserFactory(), policy.RUN_MANAGEMENT_COMMAND)
    processes.qcluster(JOBADMIN_COMMANDS="bridge_echo")
    job = _enqueue(user, command="bridge_echo", args=["4", "--delay", "1"])
    # The first line is in the event log while the command still runs (three more seconds).
    wait_for(lambda: "line 1 of 4" in _log_lines(job), timeout=30, message="the first line did not stream")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert "line 4 of 4" not in _log_lines(job)
    wait_for(lambda: Job.objects.get(pk=job.pk).status in FINISHED, timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    lines = _log_lines(job)
    assert [line for line in lines if line.startswith("line ")] == [f"line {i} of 4" for i in range(1, 5)]
    assert "done with 4 lines" in lines  # stderr too
    assert JobResult.objects.get(job=job).data == {
        "command": "bridge_echo",
        "args": ["4", "--delay", "1"],
        "exit_status": 0,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_a_non_zero_exit_fails_the_job_with_the_tail_of_stderr(processes: Any, settings: Any) -> None:
    settings.JOBADMIN_COMMANDS = ["bridge_echo"]
    user = grant(UserFactory(), policy.RUN_MANAGEMENT_COMMAND)
    processes.qcluster(JOBADMIN_COMMANDS="bridge_echo")
    job = _enqueue(user, command="bridge_echo", args=["2", "--exit", "3"])
    wait_for(lambda: Job.objects.get(pk=job.pk).status in FINISHED, timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "exited with status 3" in job.error
    assert "done with 2 lines" in job.error


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_cancel_ends_the_commands_subprocess(processes: Any, settings: Any, tmp_path: Path) -> None:
    settings.JOBADMIN_COMMANDS = ["bridge_echo"]
    user = grant(UserFactory(), policy.RUN_MANAGEMENT_COMMAND)
    processes.qcluster(JOBADMIN_COMMANDS="bridge_echo")
    pidfile = tmp_path / "command.pid"
    job = _enqueue(user, command="bridge_echo", args=["600", "--delay", "0.1", "--pidfile", str(pidfile)])
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30, message="the command did not start")
    pid = int(pidfile.read_text())
    wait_for(lambda: "line 3 of 600" in _log_lines(job), timeout=30)
    services.job_cancel(job=job, actor=user)
    wait_for(lambda: Job.objects.get(pk=job.pk).status in FINISHED, timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert not _alive(pid), "the command still runs after its job was cancelled"
    assert "line 600 of 600" not in _log_lines(job)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
