"""Production security settings from the environment (issue "hardening"): the configuration that
docs/deploy.md shows passes ``check --deploy`` with no issue, and only a trusted proxy says HTTPS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def documented_environment() -> dict[str, str]:
    """The variables of the ``production.env`` block of docs/deploy.md (checked in the docs)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```sh\n# production\.env\n(.*?)```", text, re.S)
    assert block, "docs/deploy.md shows its production.env"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def test_the_documented_production_configuration_passes_check_deploy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBADMIN_", "DATABASE_URL", "REDIS"))}
    env.update(documented_environment())
    env.update(DJANGO_SETTINGS_MODULE="jobadmin.settings", JOBADMIN_DATA_DIR=str(tmp_path))
    # The documented values point at the operator's own services; the check needs neither.
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


# What the mail connection of the documented EMAIL_URL is, read through Django's own entry
# point on either line (mail.mailers on 6.1, get_connection on 5.2).
READ_MAILER = """
import django; django.setup()
from django.core import mail
backend = mail.mailers["default"] if django.VERSION >= (6, 1) else mail.get_connection()
print(type(backend).__module__, backend.host, backend.port, backend.username, backend.use_tls)
"""


def test_the_documented_email_url_is_the_smtp_server_alerts_go_through(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBADMIN_", "EMAIL_"))}
    env.update(DJANGO_SETTINGS_MODULE="jobadmin.settings", JOBADMIN_DATA_DIR=str(tmp_path))
    env["EMAIL_URL"] = documented_environment()["EMAIL_URL"]
    done = subprocess.run(
        [sys.executable, "-c", READ_MAILER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["django.core.mail.backends.smtp", "smtp.example.com", "587", "jobadmin", "True"]


@pytest.mark.django_db
def test_an_untrusted_peer_cannot_claim_https(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.JOBADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    spoofed = Client(REMOTE_ADDR="203.0.113.30").get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert spoofed.status_code == 301
    assert spoofed["Location"].startswith("https://")
    proxied = Client(REMOTE_ADDR="10.0.0.7").get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200


@pytest.mark.django_db
def test_every_page_carries_the_content_security_policy(client: Any) -> None:
    policy = client.get("/admin/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
