"""The admin login is throttled and logged (issue "hardening": 200 of 200 wrong passwords were
tried). django-axes locks an address out after JOBADMIN_LOGIN_FAILURE_LIMIT failures; the address
is the access policy's, so a new X-Forwarded-For per try changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-secret-123"


def _login(client: Client, username: str, password: str, forwarded: str) -> int:
    client.get("/admin/login/")
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    return response.status_code


def test_wrong_passwords_with_a_new_forwarded_address_each_lock_the_address_out(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 5
    user: Any = UserFactory(is_staff=True, password=PASSWORD)
    client = Client(REMOTE_ADDR="203.0.113.20")
    codes = [_login(client, user.username, f"guess-{i}", f"198.51.100.{i}") for i in range(7)]
    assert codes[:4] == [200] * 4  # the form again, with its error
    assert codes[4:] == [429] * 3
    # Locked out: the right password is refused too, until the cool-off.
    assert _login(client, user.username, PASSWORD, "198.51.100.99") == 429
    attempt = AccessAttempt.objects.get()
    assert attempt.ip_address == "203.0.113.20"
    assert attempt.failures_since_start >= 5  # axes keeps counting the tries made while locked


def test_another_address_may_still_log_in(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    user: Any = UserFactory(is_staff=True, password=PASSWORD)
    attacker = Client(REMOTE_ADDR="203.0.113.21")
    for i in range(3):
        _login(attacker, user.username, f"guess-{i}", "")
    owner = Client(REMOTE_ADDR="203.0.113.22")
    assert _login(owner, user.username, PASSWORD, "") == 302


def test_behind_a_trusted_proxy_the_forwarded_client_is_locked_not_the_proxy(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    settings.JOBADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    user: Any = UserFactory(is_staff=True, password=PASSWORD)
    proxy = Client(REMOTE_ADDR="10.0.0.5")
    for i in range(3):
        _login(proxy, user.username, f"guess-{i}", "198.51.100.50")
    assert _login(proxy, user.username, PASSWORD, "198.51.100.50") == 429
    assert _login(proxy, user.username, PASSWORD, "198.51.100.51") == 302
