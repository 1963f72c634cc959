"""The engine's layout holds: SQL only in ``jobs.rows``, the services' names kept."""

from __future__ import annotations

import re
from pathlib import Path

import jobs.services
from tests.conftest import ROOT

SQL = re.compile(r"""["'](SELECT|UPDATE|INSERT|DELETE)\s""")


def test_no_sql_is_written_in_the_services():
    for path in sorted(Path(jobs.services.__file__).parent.glob("*.py")):
        text, where = path.read_text(), path.relative_to(ROOT)
        assert not SQL.search(text), f"{where} writes SQL: move it to jobs/rows.py as a named statement"
        assert ".cursor(" not in text, f"{where} opens a cursor: SQL belongs in jobs/rows.py"


def test_the_package_keeps_every_public_name_of_the_old_module():
    # The names callers, tests and benchmarks used as ``services.X`` before the split.
    names = """worker_name queue_ensure_defaults send_wakeups wakeup_received wakeup_if_waiting
        queue_active_count queue_add_missing_slots release_orphaned_slots queue_pause queue_resume
        dispatch_tick job_enqueue job_claim Control job_heartbeat job_report job_log job_suspend job_abandon
        job_complete job_complete_and_claim job_fail job_mark_cancelled job_cancel job_pause job_resume
        job_retry StalledOutcome stalled_jobs_queryset jobs_cleanup_stalled record_job_event RUN_TASK""".split()
    assert [name for name in names if not hasattr(jobs.services, name)] == []
    assert jobs.services.RUN_TASK == "jobs.tasks.run_next"  # the task path stored in the broker
