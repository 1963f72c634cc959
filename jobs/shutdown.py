"""A worker process's graceful stop.

SIGTERM — sent to the worker process, or to its whole process group as systemd and
Kubernetes send it, or forwarded by the cluster's main process — makes the worker claim
nothing new and suspend its running job at its next checkpoint: the job goes back to
``queued`` with its checkpoint and another worker continues it (``services.job_suspend``
with ``requeue``). Then the process exits. A job that reaches no checkpoint within
``JOBADMIN_SHUTDOWN_GRACE`` seconds is settled by its type's ``stall_policy`` (requeued or
failed) and the process exits anyway, so a stop never takes longer than the grace.

An idle worker exits at once. Installed in each django-q2 worker process when it starts
(django-q2's ``post_spawn`` signal, connected in ``JobsConfig.ready``).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from jobs.context import JobContext

logger = logging.getLogger(__name__)


class _State:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self.in_task = False
        self.context: JobContext | None = None


_state = _State()


def requested() -> bool:
    """True once this process was asked to stop: claim nothing new."""
    return _state.requested.is_set()


def install(**kwargs: Any) -> None:
    """In a worker process: SIGTERM starts a graceful stop (django-q2's ``post_spawn``)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def task_started() -> None:
    _state.in_task = True


def task_ended() -> None:
    _state.in_task = False


def job_started(ctx: JobContext) -> None:
    _state.context = ctx
    if requested():
        ctx.stop_requested()


def job_ended() -> None:
    _state.context = None


def _on_sigterm(signum: int, frame: Any) -> None:
    if requested():
        return
    _state.requested.set()
    if not _state.in_task:
        # Idle (waiting for django-q2's next task): nothing to hand over.
        raise SystemExit(0)
    ctx = _state.context
    if ctx is not None:
        ctx.stop_requested()
    timer = threading.Timer(settings.JOBADMIN_SHUTDOWN_GRACE, _grace_expired)
    timer.daemon = True
    timer.start()


def _grace_expired() -> None:
    """The running job reached no checkpoint within the grace: settle it, then exit."""
    ctx = _state.context
    if ctx is not None:
        from jobs import services

        try:
            services.job_abandon(job_id=ctx.job_id, worker=ctx.worker, attempt=ctx.attempt)
        except Exception:  # the stall sweep settles it if this write fails
            logger.exception("could not hand over job %s at shutdown", ctx.job_id)
    logger.warning("worker %s: shutdown grace of %s s expired", os.getpid(), settings.JOBADMIN_SHUTDOWN_GRACE)
    os._exit(1)


def patch_cluster() -> bool:
    """Make django-q2's cluster stop its workers gracefully; True if patched.

    Two gaps in django-q2 (1.x), closed here in every process that may start a cluster:

    - Its sentinel process keeps Python's default SIGTERM action, so a SIGTERM to the
      process group (systemd, ``runall``) killed it on the spot, possibly holding the lock
      of the cluster's stop event: the main process then waited on that lock forever and
      the workers were orphaned. The sentinel now ignores SIGTERM (its pusher and monitor
      inherit that) and is stopped in order by the main process, as on SIGINT.
    - Stopping, the sentinel waited for each worker to finish its task however long it
      took. It now first sends each worker SIGTERM (``_on_sigterm`` above): the worker
      suspends its job at the next checkpoint and exits within the grace. Its "STOP"
      pills for the workers then never block: with a full task queue (tasks the pusher
      had fetched ahead for workers that exited) the blocking put hung the stop forever.
    - The sentinel waits for its pusher before anything else, and a pusher blocked putting
      a task into the full queue of workers that have exited waits forever. Once every
      worker is gone, the queue is drained until the pusher is (``_unblock_the_pusher``).

    Relies on ``django_q.cluster.Sentinel.start``/``stop`` and its ``pool`` of worker
    processes; pyproject.toml caps django-q2 below 2. ``tests/jobs/test_processes.py``
    stops real clusters both ways.
    """
    from django_q import cluster

    sentinel: Any = getattr(cluster, "Sentinel", None)
    if sentinel is None or getattr(sentinel, "_jobadmin_graceful", False):
        return False
    if not (callable(getattr(sentinel, "start", None)) and callable(getattr(sentinel, "stop", None))):
        logger.warning("django-q2's Sentinel changed: workers are not stopped gracefully")
        return False
    original_start, original_stop = sentinel.start, sentinel.stop

    def start(self: Any) -> Any:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return original_start(self)

    def stop(self: Any) -> Any:
        for process in list(getattr(self, "pool", ())):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except (ProcessLookupError, TypeError):  # gone already, or never started
                pass
        _stop_pills_never_block(self)
        _unblock_the_pusher(self)
        return original_stop(self)

    sentinel.start, sentinel.stop = start, stop
    sentinel._jobadmin_graceful = True
    return True


def _stop_pills_never_block(sentinel: Any) -> None:
    """The sentinel's "STOP" pills go into its task queue only if there is room.

    The workers stop on their own SIGTERM; a pill is only their second way out. Tasks the
    pusher had fetched ahead stay unacknowledged in the broker, which delivers them again,
    and a suspended job's own wake-up was already sent.
    """
    task_queue = getattr(sentinel, "task_queue", None)
    put = getattr(task_queue, "put", None)
    if put is None:
        return

    def put_stop_without_blocking(obj: Any, block: bool = True, timeout: float | None = None) -> Any:
        if obj == "STOP":
            try:
                return put(obj, block=False)
            except queue.Full:
                return None
        return put(obj, block, timeout)

    task_queue.put = put_stop_without_blocking  # type: ignore[union-attr]


def _unblock_the_pusher(sentinel: Any) -> None:
    """Once every worker has exited, take what is in the task queue until the pusher is gone.

    Nobody else reads the queue then, and a pusher blocked on a full one never sees its stop
    event. The tasks taken are wake-ups, never jobs: a queued job stays queued, and a wake-up
    that no worker took is believed lost and sent again (``JOBADMIN_WAKEUP_LOST_AFTER``).
    """
    pusher, pool, task_queue = (getattr(sentinel, name, None) for name in ("pusher", "pool", "task_queue"))
    if pusher is None or pool is None or task_queue is None:
        return

    def drain() -> None:
        while any(process.is_alive() for process in list(pool)):
            time.sleep(0.1)
        while pusher.is_alive():
            try:
                task_queue.get(timeout=0.1)
            except queue.Empty:
                pass
            except (OSError, ValueError):  # the queue is closed: the stop went on without us
                return

    threading.Thread(target=drain, name="jobadmin-unblock-pusher", daemon=True).start()


def patch_cluster_start() -> bool:
    """Before a cluster starts its sentinel: settle the jobs of this host's workers that are gone
    (``services.jobs_recover_dead_workers``), so a run that was killed frees its slots at once
    instead of after the stall threshold. True if patched.

    Runs in the cluster's main process, then closes its database connections: the sentinel
    and the workers are forked from it and must not share them. A failure is logged and the
    cluster starts anyway (the stall sweep settles those jobs later). Relies on
    ``django_q.cluster.Cluster.start``; ``tests/jobs/test_processes.py`` kills real runs.
    """
    from django_q import cluster

    klass: Any = getattr(cluster, "Cluster", None)
    if klass is None or getattr(klass, "_jobadmin_recovers", False):
        return False
    original_start = klass.start

    def start(self: Any) -> Any:
        from django.db import connections

        from jobs import services

        try:
            services.jobs_recover_dead_workers()
        except Exception:
            logger.exception("could not settle the jobs of this host's workers that are gone")
        finally:
            connections.close_all()
        return original_start(self)

    klass.start = start
    klass._jobadmin_recovers = True
    return True
