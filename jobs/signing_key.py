"""Which key a worker cluster signs with, told without the key (issue 14, item 7).

django-q2 signs every wake-up, and each cluster's stats, with ``DJANGO_SECRET_KEY`` (salted
with the cluster name). A cluster with another key cannot read the wake-ups: its pusher
takes them off the broker and drops them, and django-q2's ``Stat.get_all()`` skips its
stats, so it was invisible to health while it ate wake-ups. Two patches, installed in every
process that may start a cluster (``JobsConfig.ready``):

- beside its stats, each cluster publishes a *fingerprint* of its signing key (a hash of
  its signature of a fixed text: equal fingerprints read each other's wake-ups; the key is
  never written), its host and its number of workers, as plain JSON that any key reads;
  ``monitoring.health`` compares them with its own;
- a wake-up the pusher cannot read is logged as an error that names the cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

# What is signed for the fingerprint: any fixed text; changing it changes every fingerprint.
_FINGERPRINT_TEXT = "jobadmin: the key of the wake-ups"
# A record outlives the cluster's last publication by this much (django-q2's stats: 3 s).
RECORD_TTL = 6
# Seconds between two publications: django-q2 saves its stats every guard cycle (0.5 s), and
# on the embedded default each is a write to SQLite; this adds one every 2 s.
PUBLISH_EVERY = 2.0
CANNOT_READ = (
    "cannot read a wake-up: it is signed with another DJANGO_SECRET_KEY than this worker's "
    "and is dropped: its job waits for another wake-up. "
    "Give every machine the same DJANGO_SECRET_KEY (docs/deploy.md)."
)


def fingerprint() -> str:
    """This process's signing key as django-q2 uses it, hashed (16 hex digits)."""
    from django.core.signing import Signer
    from django_q.conf import Conf

    signature = Signer(key=Conf.SECRET_KEY, salt=Conf.PREFIX).signature(_FINGERPRINT_TEXT)
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def _records_pattern() -> str:
    from django_q.conf import Conf

    # Beside django-q2's ``<Q_STAT>:<cluster>`` keys, not among them: its own readers would
    # try (and fail) to unsign each record.
    return f"{Conf.Q_STAT}-key:"


def record_key(cluster: str) -> str:
    return f"{_records_pattern()}{cluster}"


def publish(*, cluster: str, host: str, pid: int, workers: int, fingerprint: str) -> None:
    """Store one cluster's record where its stats are (Redis, or the ORM broker's cache)."""
    from django_q.brokers import get_broker

    record = {"cluster": cluster, "host": host, "pid": pid, "workers": workers, "fingerprint": fingerprint}
    get_broker().set_stat(record_key(cluster), json.dumps(record), RECORD_TTL)


def unpublish(cluster: str) -> None:
    """Remove a cluster's record (it stops pushing: its wake-ups are no longer at stake)."""
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    broker = get_broker()
    # Where ``set_stat`` put it: the Redis broker's own connection, else the cache.
    if isinstance(broker, Redis):
        broker.connection.delete(record_key(cluster))
    elif broker.cache is not None:
        broker.cache.delete(record_key(cluster))


def cluster_records() -> list[dict[str, Any]]:
    """The records of the live clusters, whatever their key."""
    from django_q.brokers import get_broker

    records = []
    # The ORM broker ignores the pattern and returns every stat: what is not a record is skipped.
    for raw in get_broker().get_stats(f"{_records_pattern()}*") or []:
        try:
            record = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("fingerprint"), str):
            records.append(record)
    return records


def other_key_records() -> list[dict[str, Any]]:
    """The live clusters that cannot read this process's wake-ups (their key differs)."""
    mine = fingerprint()
    return [record for record in cluster_records() if record["fingerprint"] != mine]


class _Publisher:
    """A cluster's record, from its stats: every ``PUBLISH_EVERY`` while it runs, removed once
    it has stopped. Nothing while it stops: the sentinel must reach its pusher's stop at once
    (a write there, waiting on SQLite's lock, let the pusher take a wake-up for a worker that
    had already exited, and block on the full task queue for good)."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self.removed = False

    def saw(self, stat: Any) -> None:
        from django_q.conf import Conf

        if stat.status == Conf.STOPPING:
            return
        if stat.status == Conf.STOPPED:
            if not self.removed:
                self.removed = True
                unpublish(str(stat.cluster_id))
            return
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at, self.removed = now + PUBLISH_EVERY, False
            workers = len(stat.workers)
            publish(
                cluster=str(stat.cluster_id),
                host=str(stat.host),
                pid=int(stat.pid),
                workers=workers,
                fingerprint=fingerprint(),
            )


def patch_cluster() -> bool:
    """Publish the record with django-q2's stats, and log the wake-ups the pusher cannot read.

    Relies on ``django_q.status.Stat.save`` (called by the sentinel every guard cycle) and
    on the pusher calling ``django_q.pusher.SignedPackage.loads``; pyproject.toml caps
    django-q2 below 2, and tests/deploy/test_worker_secret_key.py runs a real cluster.
    """
    from django_q import pusher, status
    from django_q.signing import BadSignature, SignedPackage

    stat: Any = status.Stat
    if getattr(stat, "_jobadmin_key_published", False):
        return False
    original_save = stat.save
    publisher = _Publisher()

    def save(self: Any) -> Any:
        result = original_save(self)
        try:
            publisher.saw(self)
        except Exception as exc:  # the broker is away: django-q2's own save says so too
            logger.warning("publishing the signing key's fingerprint failed: %r", exc)
        return result

    class LoudSignedPackage(SignedPackage):
        @staticmethod
        def loads(obj: Any) -> Any:
            try:
                return SignedPackage.loads(obj)
            except BadSignature:
                logger.error(CANNOT_READ)
                raise

    stat.save = save
    stat._jobadmin_key_published = True
    pusher.SignedPackage = LoudSignedPackage  # type: ignore[misc]
    return True
