"""A Redis at its ``maxmemory`` (issue 21): health says so, where it once called the broker
healthy while it refused wake-ups as out of memory or evicted them.

Each test runs a redis-server of its own (``own_redis``) as this process's django-q2 broker,
given a small ``maxmemory`` and filled past it.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from monitoring.health import HEALTHY, WARNING, check_broker
from tests.deploy.conftest import OwnRedis

LIMIT = 2 * 1024 * 1024


def fill(server: OwnRedis, policy: str) -> redis.Redis:
    """Cap ``server`` at LIMIT under ``policy`` and write past it (until refused, for noeviction)."""
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory", LIMIT)
    client.config_set("maxmemory-policy", policy)
    for n in range(400):  # 400 × 16 KiB: three times the limit
        try:
            client.set(f"filler:{n}", b"x" * 16384)
        except redis.exceptions.OutOfMemoryError:
            break
    return client


def test_without_a_memory_limit_the_broker_is_healthy_and_says_its_memory(broker_on_own_redis: OwnRedis) -> None:
    check = check_broker()
    assert check["status"] == HEALTHY, check
    assert check["redis_memory"]["maxmemory_bytes"] == 0
    assert check["redis_memory"]["used_bytes"] > 0


def test_a_redis_full_under_noeviction_is_a_warning_that_counts_the_refused_writes(
    broker_on_own_redis: OwnRedis,
) -> None:
    fill(broker_on_own_redis, "noeviction")

    check = check_broker()

    assert check["status"] == WARNING, check
    assert "maxmemory" in check["reason"], check["reason"]
    assert "refused as out of memory" in check["reason"], check["reason"]
    memory = check["redis_memory"]
    assert memory["policy"] == "noeviction"
    assert memory["refused_out_of_memory"] >= 1
    assert memory["used_bytes"] >= 0.9 * LIMIT


def test_a_redis_that_evicts_keys_is_a_warning_wake_ups_may_be_among_them(broker_on_own_redis: OwnRedis) -> None:
    fill(broker_on_own_redis, "allkeys-lru")

    check = check_broker()

    assert check["status"] == WARNING, check
    assert "evicted" in check["reason"], check["reason"]
    assert check["redis_memory"]["evicted_keys"] > 0


@pytest.mark.django_db
def test_the_health_endpoint_carries_the_memory_detail(
    broker_on_own_redis: OwnRedis, api_client: Any, superuser: Any
) -> None:
    fill(broker_on_own_redis, "noeviction")
    api_client.force_authenticate(superuser)

    body = api_client.get("/api/health/").json()

    assert body["checks"]["broker"]["status"] == WARNING, body
    assert body["checks"]["broker"]["redis_memory"]["refused_out_of_memory"] >= 1
