"""A worker cluster with another ``DJANGO_SECRET_KEY`` is loud, not silent (issue 14, item 7).

django-q2 signs every wake-up with the secret key; a cluster with another key cannot read
them and drops them (its pusher has already taken them off the broker), and its own stats
are signed with its key, so ``Stat.get_all()`` skips it: health saw no worker at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from monitoring.health import CRITICAL, HEALTHY, WARNING, check_workers
from tests.conftest import Processes, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _other_key_check() -> dict[str, Any] | None:
    check = check_workers()
    return check if check.get("other_key_workers") else None


@pytest.mark.processes
def test_a_cluster_with_another_secret_key_is_named_by_health_and_logs_each_dropped_wake_up(
    processes: Processes,
) -> None:
    from jobs import services

    # Given a cluster whose DJANGO_SECRET_KEY is not this process's
    cluster = processes.qcluster(DJANGO_SECRET_KEY="another-key-than-the-web-processes-one")

    # Then health names its workers: none of the live ones can read a wake-up (critical)
    check = wait_for(_other_key_check, timeout=20, message="health does not see the cluster with another key")
    assert check["status"] == CRITICAL
    assert check["other_key_workers"] == 2  # Q_WORKERS of tests/settings.py
    assert check["workers"] == 0
    assert "DJANGO_SECRET_KEY" in check["reason"]
    assert check["other_key_hosts"]

    # When a job is enqueued, its wake-up (signed with this process's key) reaches that cluster
    services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})

    # Then the cluster logs an error an operator can search for
    wait_for(
        lambda: b"cannot read a wake-up" in processes.log_of(cluster),
        timeout=20,
        message="the cluster dropped a wake-up without saying why",
    )
    log = processes.log_of(cluster).decode(errors="replace")
    line = next(line for line in log.splitlines() if "cannot read a wake-up" in line)
    assert "DJANGO_SECRET_KEY" in line
    assert "another-key" not in log  # the key itself is never written anywhere


@pytest.fixture
def published() -> Any:
    """Records published as clusters would, removed afterwards; and a readable cluster stat."""
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis
    from django_q.signing import SignedPackage
    from django_q.status import Stat, Status

    from jobs import signing_key

    broker = get_broker()
    clusters: list[str] = []

    def publish(cluster: str, *, host: str, workers: int, fingerprint: str) -> None:
        clusters.append(cluster)
        signing_key.publish(cluster=cluster, host=host, pid=1, workers=workers, fingerprint=fingerprint)
        if fingerprint == signing_key.fingerprint():  # django-q2's own stat, which only this key reads
            stat = Status(pid=1, cluster_id=cluster)
            stat.workers = list(range(workers))
            broker.set_stat(Stat.get_key(cluster), SignedPackage.dumps(stat, True), 30)

    yield publish
    for cluster in clusters:
        signing_key.unpublish(cluster)
        # The Redis broker keeps stats on its own connection, the ORM broker in the cache.
        (broker.connection if isinstance(broker, Redis) else broker.cache).delete(Stat.get_key(cluster))


def test_health_warns_while_right_key_workers_run_beside_a_cluster_with_another_key(
    published: Any,
) -> None:
    from jobs import signing_key

    published("c-right", host="right-host", workers=3, fingerprint=signing_key.fingerprint())
    published("c-other", host="other-host", workers=2, fingerprint="0" * 16)

    check = check_workers()

    assert check["status"] == WARNING
    assert check["workers"] == 3
    assert check["other_key_workers"] == 2
    assert check["other_key_hosts"] == ["other-host"]
    assert "2 workers" in check["reason"]
    assert "DJANGO_SECRET_KEY" in check["reason"]


def test_health_is_healthy_when_every_cluster_has_this_key(published: Any) -> None:
    from jobs import signing_key

    published("c-right", host="right-host", workers=20, fingerprint=signing_key.fingerprint())

    check = check_workers()

    assert check["status"] == HEALTHY, check
    assert check["other_key_workers"] == 0


def test_the_fingerprint_follows_the_key_and_does_not_show_it(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_q.conf import Conf

    from jobs import signing_key

    mine = signing_key.fingerprint()
    assert mine == signing_key.fingerprint()
    assert settings.SECRET_KEY not in mine
    monkeypatch.setattr(Conf, "SECRET_KEY", "another key")
    assert signing_key.fingerprint() != mine
