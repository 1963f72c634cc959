"""The CLI bridge: the built-in ``management-command`` job type.

It runs a Django management command named in ``JOBADMIN_COMMANDS`` in a subprocess
(``python -m django <command> <args>`` with the worker's environment and working directory: the
same as ``python manage.py <command> <args>``, without knowing where a host keeps its manage.py), streams
each line of its stdout and stderr as a log line of the job as it comes, and keeps its exit
status: non-zero fails the job with the tail of stderr as the error.

The arguments are checked against the command's own argparse parser while the params are
validated, so bad arguments are field errors (a 400, a form error, a CLI error) and nothing is
queued. A cancel (or the job's time-out) terminates the subprocess's process group: SIGTERM,
then SIGKILL after ``KILL_AFTER`` seconds.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from django.conf import settings
from django.core.management import BaseCommand, CommandError, get_commands, load_command_class
from rest_framework import serializers

from jobs import policy
from jobs.context import JobContext
from jobs.registry import job

# Seconds a command has to stop after SIGTERM before it is killed.
KILL_AFTER = 5.0
# How often the job looks for a cancel while the command is quiet, and how long output lines
# are gathered before they are written as one log event.
POLL = 0.1
# Lines of stderr kept for the error of a failed command.
STDERR_TAIL = 20
# Options every management command takes that would run it against another project.
REFUSED_OPTIONS = ("--settings", "--pythonpath")
HELP_OPTIONS = ("-h", "--help", "--version")


class CommandFailed(Exception):
    """The command exited with a non-zero status."""


def command_parser(name: str) -> Any:
    """The argparse parser of management command ``name``; LookupError if there is none."""
    app = get_commands().get(name)
    if app is None:
        raise LookupError(name)
    command: BaseCommand = app if isinstance(app, BaseCommand) else load_command_class(app, name)
    return command.create_parser("manage.py", name)


def args_problems(name: str, args: list[str]) -> list[str]:
    """Why ``args`` are not arguments command ``name`` accepts (its own parser says), or []."""
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in REFUSED_OPTIONS:
            return [f"{option} is not allowed: the command runs with this project's settings."]
        if option in HELP_OPTIONS:
            return [f"{option} only prints and exits: it is not run as a job."]
    try:
        command_parser(name).parse_args(args)
    except CommandError as exc:  # a parser not called from the command line raises instead of exiting
        return [str(exc).removeprefix("Error: ")]
    except SystemExit:
        return ["These arguments make the command exit before it runs."]
    return []


class ManagementCommandParams(serializers.Serializer):
    command = serializers.CharField(
        max_length=200, help_text="A management command named in the JOBADMIN_COMMANDS setting."
    )
    args = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        default=list,
        max_length=200,
        help_text="Its arguments, one string each, as on the command line.",
    )

    def validate_command(self, value: str) -> str:
        if value not in settings.JOBADMIN_COMMANDS:
            raise serializers.ValidationError("This command is not one of JOBADMIN_COMMANDS.")
        if value not in get_commands():
            raise serializers.ValidationError("There is no management command of this name.")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if problems := args_problems(data["command"], list(data.get("args", []))):
            raise serializers.ValidationError({"args": problems})
        return data


@job(
    "management-command",
    queue="default",
    steps=["Run"],
    params=ManagementCommandParams,
    timeout=min(3600, settings.JOBADMIN_MAX_JOB_TIMEOUT),
    # A subprocess cannot stop at a checkpoint and continue later.
    resumable=False,
    permission=policy.RUN_MANAGEMENT_COMMAND,
)
def management_command(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Runs a Django management command named in JOBADMIN_COMMANDS; its output is the job's log."""
    command, args = params["command"], list(params.get("args", []))
    ctx.step("Run")
    ctx.log(f"Running: manage.py {' '.join([command, *args])}")
    ctx.flush_log()
    proc = subprocess.Popen(
        # The worker's environment (DJANGO_SETTINGS_MODULE, PYTHONPATH) and working directory, so the
        # same project; -u: unbuffered, so each line arrives as it is written.
        [sys.executable, "-u", "-m", "django", command, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a cancel ends whatever it started too
    )
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    readers = [
        threading.Thread(target=_read_lines, args=(stream, name, lines), daemon=True)
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
    ]
    for reader in readers:
        reader.start()
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
    try:
        open_streams = len(readers)
        while open_streams:
            try:
                name, line = lines.get(timeout=POLL)
            except queue.Empty:
                ctx.flush_log()
                ctx.checkpoint()  # a cancel or the time-out takes effect here
                continue
            if line is None:
                open_streams -= 1
                continue
            if name == "stderr":
                stderr_tail.append(line)
            ctx.log(line, "warning" if name == "stderr" else "info")
            if lines.empty():
                ctx.flush_log()
        while proc.poll() is None:
            ctx.checkpoint()
            time.sleep(POLL)
    finally:
        _stop(proc)
        ctx.flush_log()
    status = proc.returncode
    if status != 0:
        tail = "\n".join(stderr_tail) or "(nothing on stderr)"
        raise CommandFailed(f"manage.py {command} exited with status {status}:\n{tail}"[-2000:])
    return {"command": command, "args": args, "exit_status": status}


def _read_lines(stream: IO[bytes] | None, name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    assert stream is not None
    with stream:
        for raw in stream:
            lines.put((name, raw.decode(errors="replace").rstrip("\r\n")))
    lines.put((name, None))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The command's process group ends: at once if it has, else SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_AFTER)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # whatever of its group is left
    proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
