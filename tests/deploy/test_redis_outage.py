"""Redis is a dependency the API degrades without (DESIGN.md, "JSON API": never a 500
because Redis is briefly away; issue 14, item 5).

A redis-server of the test's own, on another port, is the cache (where the rate limits
live) and the channel layer's Redis; the test stops it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.api import throttling
from tests.deploy.conftest import OwnRedis

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_own_redis(own_redis: OwnRedis, settings: Any) -> Iterator[OwnRedis]:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": own_redis.url,
            "KEY_PREFIX": "outage-test",
        }
    }
    settings.REDIS_URL = own_redis.url
    yield own_redis
    throttling._state["shared_down_until"] = 0.0  # the next test counts in Redis again


def test_with_redis_away_the_api_answers_and_still_limits_rates(
    on_own_redis: OwnRedis, api_client: Any, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_client.force_authenticate(user)
    assert api_client.get("/api/jobs/").status_code == 200
    on_own_redis.stop()

    started = time.monotonic()
    statuses = [api_client.get("/api/jobs/").status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert time.monotonic() - started < 5  # no time-out per request either

    # The rate limits fall back to this process's own counts: a limit still holds.
    monkeypatch.setattr(throttling.UserRateThrottle, "rate", "3/min", raising=False)
    limited = [api_client.get("/api/jobs/").status_code for _ in range(5)]
    assert 429 in limited
    assert 500 not in limited


def test_with_redis_away_health_says_warning_not_500(on_own_redis: OwnRedis, api_client: Any, superuser: Any) -> None:
    api_client.force_authenticate(superuser)
    on_own_redis.stop()

    response = api_client.get("/api/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "warning", body
    assert any("redis" in reason.lower() for reason in body["reasons"]), body["reasons"]
