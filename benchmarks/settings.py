"""Settings for the benchmarks: the main settings plus the no-op job type of ``benchmarks.jobs``.

Every bare task's result is kept (``save_limit`` 0, no pruning), as the benchmark counts
them to know when all are done; JobAdmin's own wake-ups are never saved.
"""

from jobadmin.settings import *  # noqa: F403
from jobadmin.settings import INSTALLED_APPS, Q_CLUSTER

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks"]
Q_CLUSTER = {**Q_CLUSTER, "save_limit": 0}
