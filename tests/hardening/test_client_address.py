"""Throttles count the client's real address: a spoofed X-Forwarded-For opens no door (issue
"hardening"; DESIGN "Access policy": proxy headers only from JOBADMIN_TRUSTED_PROXIES)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from jobs import policy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counts() -> Any:
    cache.clear()
    yield
    cache.clear()


def _tries(settings: Any, n: int, *, peer: str, forwarded: list[str]) -> list[int]:
    settings.JOBADMIN_API_THROTTLE_RATES = {**settings.JOBADMIN_API_THROTTLE_RATES, "token": "5/min"}
    client = Client(REMOTE_ADDR=peer)
    return [
        client.post(
            "/api/auth/token/",
            {"username": "nobody", "password": "guess"},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=forwarded[i % len(forwarded)],
        ).status_code
        for i in range(n)
    ]


def test_a_new_forwarded_address_per_try_from_an_untrusted_peer_is_still_throttled(settings: Any) -> None:
    settings.JOBADMIN_TRUSTED_PROXIES = []
    codes = _tries(settings, 8, peer="203.0.113.7", forwarded=[f"198.51.100.{i}" for i in range(8)])
    assert codes == [400] * 5 + [429] * 3


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(settings: Any) -> None:
    settings.JOBADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    first = _tries(settings, 6, peer="10.1.2.3", forwarded=["198.51.100.1"])
    second = _tries(settings, 5, peer="10.1.2.3", forwarded=["198.51.100.2"])
    assert first == [400] * 5 + [429]
    assert second == [400] * 5


def test_a_client_behind_a_trusted_proxy_cannot_prepend_addresses_to_escape(settings: Any) -> None:
    settings.JOBADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The proxy appends the address it saw; whatever the client wrote stands to the left.
    codes = _tries(settings, 7, peer="10.1.2.3", forwarded=[f"192.0.2.{i}, 198.51.100.9" for i in range(7)])
    assert codes == [400] * 5 + [429] * 2


def test_the_response_says_when_to_try_again(settings: Any) -> None:
    _tries(settings, 5, peer="203.0.113.8", forwarded=["x"])
    response = Client(REMOTE_ADDR="203.0.113.8").post(
        "/api/auth/token/", {"username": "nobody", "password": "guess"}, content_type="application/json"
    )
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_request_client_address_is_the_one_rule() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert policy.request_client_address(request) == "203.0.113.7"
