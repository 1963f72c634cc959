"""Test settings: the main settings with fast timings and per-run isolation.

Every value that other processes started by the tests must share (database name, Redis
prefix, cluster name) is derived from ``JOBADMIN_TEST_RUN``, which the first process
sets and its children inherit.
"""

import faulthandler
import os
import signal

RUN = os.environ.get("JOBADMIN_TEST_RUN") or f"t{os.getpid()}"
# Under pytest-xdist every worker is a run of its own (its database, Redis keys and cluster
# name): the workers inherit the controller's tag, and each adds its name (gw0, gw1, ...).
# Its children inherit both variables and keep the tag as it is.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker and not RUN.endswith(_worker):
    RUN = f"{RUN}{_worker}"
    os.environ["REDIS_PREFIX"] = f"jobadmin-test-{RUN}"
    os.environ["Q_CLUSTER_NAME"] = f"jobadmin-test-{RUN}"
os.environ["JOBADMIN_TEST_RUN"] = RUN
os.environ.setdefault("REDIS_PREFIX", f"jobadmin-test-{RUN}")
os.environ.setdefault("Q_CLUSTER_NAME", f"jobadmin-test-{RUN}")
for name, value in {
    "JOBADMIN_HEARTBEAT_INTERVAL": "0.5",
    "JOBADMIN_CONTROL_POLL": "0.1",
    "JOBADMIN_PROGRESS_INTERVAL": "0.2",
    "JOBADMIN_STALL_THRESHOLD": "3",
    # Within what the stall threshold leaves (jobs.outage.give_up_after).
    "JOBADMIN_DB_OUTAGE_GRACE": "2",
    # At most the grace (jobs.W003): a silent database link is noticed within it.
    "JOBADMIN_DB_QUERY_TIMEOUT": "2",
    "Q_POLL": "0.05",
    "Q_WORKERS": "2",
    # The processes fixture waits for the cluster's INFO line "... running.".
    "Q_LOG_LEVEL": "INFO",
    "JOB_STATS_INTERVAL": "1",
    "JOBADMIN_MONITOR_LEASE": "3",
}.items():
    os.environ.setdefault(name, value)

# Every process of a test run (the processes a test starts load these settings too) prints
# its threads' stacks on SIGUSR1: tests/conftest.py asks for them when a process test fails.
faulthandler.register(signal.SIGUSR1, all_threads=True)

from jobadmin.settings import *  # noqa: E402,F403
from jobadmin.settings import DATA_DIR, DATABASES, INSTALLED_APPS  # noqa: E402

if not os.environ.get("JOBADMIN_DB_NAME"):
    # The test process itself (not the processes it starts, which keep the bound above):
    # creating and dropping its database and its deliberate lock waits may take longer
    # than a partition test's bound on a loaded machine.
    JOBADMIN_DB_QUERY_TIMEOUT = 60.0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Mail: Django's test environment swaps in its locmem backend (EMAIL_BACKEND or MAILERS).
MEDIA_ROOT = DATA_DIR / "test-media" / RUN

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that worker processes started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{RUN}.sqlite3")}

# A child process started by a test is pointed at the test database by name.
if os.environ.get("JOBADMIN_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["JOBADMIN_DB_NAME"]

# A management command for the CLI bridge's tests (tests/jobs/test_bridge.py), here and in workers.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.bridge"]

# Worker processes started by the engine's process tests also load their throwaway job
# types (tests/jobtypes/jobs.py); the test process registers them with a fixture instead.
if os.environ.get("JOBADMIN_TEST_JOBTYPES") == "1":
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.jobtypes"]
