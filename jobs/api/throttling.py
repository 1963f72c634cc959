"""The API's rate limits, which survive an outage of the cache they live in.

The limits count in the shared cache (Redis in production), so they hold across every web
process. When that cache is unreachable, a request is not refused with a 500 (DESIGN.md:
never a 500 because Redis is briefly away): the limits fall back to counts kept in this
process's memory. That is the documented choice (docs/deploy.md): while Redis is away
each web process limits on its own, so a client spread over N processes may get up to
N times its rate, and nobody is let through unlimited. After a failure the shared cache
is left alone for ``SHARED_RETRY`` seconds, so an outage costs one failed attempt per
interval, not one per request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from rest_framework import throttling

from jobs import policy

logger = logging.getLogger(__name__)

SHARED_RETRY = 5.0  # seconds without trying the shared cache after it failed

_local = LocMemCache("jobadmin-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
_state = {"shared_down_until": 0.0}
_state_lock = threading.Lock()


def shared_cache_down() -> bool:
    """True while the rate limits count in this process (the shared cache failed recently)."""
    return time.monotonic() < _state["shared_down_until"]


class FallbackThrottleMixin:
    """Counts in the shared cache; in this process's memory while that cache is away. The rates
    are ``JOBADMIN_API_THROTTLE_RATES``, never the project's ``REST_FRAMEWORK`` (jobs.api.settings)."""

    cache: Any

    def get_ident(self, request: Any) -> str:
        """The client's address as ``jobs.policy`` reads it: ``X-Forwarded-For`` only from a proxy in
        ``JOBADMIN_TRUSTED_PROXIES`` (DRF's own ``get_ident`` believes it from anyone while
        ``NUM_PROXIES`` is unset, so a new header per request was a new count)."""
        return policy.request_client_address(request)

    def get_rate(self) -> str | None:
        rates = settings.JOBADMIN_API_THROTTLE_RATES
        scope = getattr(self, "scope", None)
        if scope not in rates:
            raise ImproperlyConfigured(f"JOBADMIN_API_THROTTLE_RATES has no rate for the scope {scope!r}")
        return str(rates[scope])

    def allow_request(self, request: Any, view: Any) -> bool:
        if not shared_cache_down():
            try:
                return bool(super().allow_request(request, view))  # type: ignore[misc]
            except Exception as exc:  # the cache backend's own errors (redis.ConnectionError, ...)
                with _state_lock:
                    _state["shared_down_until"] = time.monotonic() + SHARED_RETRY
                logger.warning("throttling: the shared cache failed (%r); counting in this process", exc)
        self.cache = _local
        return bool(super().allow_request(request, view))  # type: ignore[misc]


class UserRateThrottle(FallbackThrottleMixin, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(FallbackThrottleMixin, throttling.AnonRateThrottle):
    pass


class ScopedRateThrottle(FallbackThrottleMixin, throttling.ScopedRateThrottle):
    pass
