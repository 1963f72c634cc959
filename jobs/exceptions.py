"""Domain errors of the job engine, and the signals raised inside a running job."""

from __future__ import annotations


class JobError(Exception):
    """Base of the engine's domain errors; the API maps them to 4xx in one place."""


class TransitionNotAllowed(JobError):
    """An action that the job's current status does not allow; nothing was changed."""

    def __init__(self, *, action: str, status: str, message: str | None = None) -> None:
        self.action = action
        self.status = status
        super().__init__(message or f"Cannot {action} a job that is {status}.")


class QueueNotFound(JobError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"Unknown queue {name!r}.")


class IdempotencyKeyReused(JobError):
    """An ``Idempotency-Key`` sent again with another request than the one it queued; nothing was written."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            "This Idempotency-Key was used for another request (type, params, queue or priority) "
            "in the last 24 hours; use a new key for a new request."
        )


class JobInterrupt(BaseException):
    """Raised inside a job function at a checkpoint.

    A ``BaseException`` (like ``asyncio.CancelledError``) so that a job's own
    ``except Exception`` cannot swallow it; ``finally`` blocks still run for clean-up.
    """


class JobCancelled(JobInterrupt):
    pass


class JobTimedOut(JobInterrupt):
    pass


class JobLost(JobInterrupt):
    """This worker no longer owns the job (it was cleaned up as stalled)."""


class JobSuspended(JobInterrupt):
    """A pause (or the worker's shutdown) took effect at a checkpoint: the job stops here,
    its cursor is saved, and a later run continues from it (docs/jobs.md)."""


class CursorNotSaved(JobError, TypeError):
    """A cursor given to ``ctx.save_cursor`` that cannot be stored as JSON; nothing was saved."""
