"""A management command for the CLI bridge's tests: prints numbered lines, slowly if asked."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management import BaseCommand


class Command(BaseCommand):
    help = "Prints LINES numbered lines (and one on stderr), then exits with --exit."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("lines", type=int)
        parser.add_argument("--delay", type=float, default=0.0, help="Seconds between lines.")
        parser.add_argument("--exit", type=int, default=0, dest="exit_status")
        parser.add_argument("--pidfile", default="", help="Write this process's id here first.")

    def handle(self, *args: Any, lines: int, delay: float, exit_status: int, pidfile: str, **options: Any) -> None:
        if pidfile:
            Path(pidfile).write_text(str(os.getpid()))
        for i in range(1, lines + 1):
            self.stdout.write(f"line {i} of {lines}")
            self.stdout.flush()
            time.sleep(delay)
        sys.stderr.write(f"done with {lines} lines\n")
        sys.stderr.flush()
        if exit_status:
            sys.exit(exit_status)
