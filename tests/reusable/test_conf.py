"""jobadmin.conf: a project that sets no JobAdmin setting gets every default; a bad one is a
system-check error naming it (DESIGN "In your own project")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import override_settings

from jobadmin import conf

ROOT = Path(__file__).resolve().parents[2]

HOST_SETTINGS = """
SECRET_KEY = "host-secret-key-for-the-check-only-0123456789abcdefghijklmnop"
BASE_DIR = {base!r}
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    *__import__("jobadmin.conf", fromlist=["JOBADMIN_APPS"]).JOBADMIN_APPS,
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {{"context_processors": ["django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth", "django.contrib.messages.context_processors.messages"]}}}}]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
ROOT_URLCONF = "host_urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
{extra}
"""


def _host_check(
    tmp_path: Path, extra: str = "", command: tuple[str, ...] = ("check",)
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "host_settings.py").write_text(
        textwrap.dedent(HOST_SETTINGS).format(base=str(tmp_path), db=str(tmp_path / "db.sqlite3"), extra=extra)
    )
    (tmp_path / "host_urls.py").write_text(
        "from django.urls import include, path\nurlpatterns = [path('ops/', include('jobadmin.urls'))]\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JOBADMIN_", "DJANGO_", "Q_", "REDIS_", "DATABASE_"))
    }
    env.update(DJANGO_SETTINGS_MODULE="host_settings", PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    return subprocess.run(
        [sys.executable, "-m", "django", *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_host_that_sets_no_jobadmin_setting_passes_the_check(tmp_path: Path) -> None:
    result = _host_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_bad_setting_in_a_host_stops_manage_py_with_a_message_naming_it(tmp_path: Path) -> None:
    result = _host_check(tmp_path, extra='JOBADMIN_QUEUES = {"high": 0}\nJOBADMIN_HEARTBEAT_INTERVAL = "fast"')
    assert result.returncode != 0
    assert "jobadmin.E001" in result.stderr
    assert "JOBADMIN_QUEUES the limit of queue 'high' must be a whole number of at least 1, not 0." in result.stderr
    assert "JOBADMIN_HEARTBEAT_INTERVAL must be a number, not 'fast'." in result.stderr


def test_defaults_fill_only_what_the_host_left_out() -> None:
    host = SimpleNamespace(JOBADMIN_HISTORY_DAYS=7, BASE_DIR="/srv/site")
    conf.apply_defaults(host)
    assert host.JOBADMIN_HISTORY_DAYS == 7
    assert host.JOBADMIN_STALL_THRESHOLD == 90.0
    assert str(host.JOBADMIN_DATA_DIR) == "/srv/site/var"
    assert host.CHANNEL_LAYERS == {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert host.JOBADMIN_RELAY_IN_WEB is True
    assert host.Q_CLUSTER["orm"] == "default"
    assert host.Q_CLUSTER["workers"] == 10
    assert host.PROMETHEUS_ALLOWED_IPS == ["127.0.0.1", "::1"]


def test_a_redis_channel_layer_moves_the_relay_out_of_the_web_process() -> None:
    host = SimpleNamespace(CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}})
    conf.apply_defaults(host)
    assert host.JOBADMIN_RELAY_IN_WEB is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("JOBADMIN_QUEUES", {}, "must be a non-empty dict"),
        ("JOBADMIN_QUEUES", {"bad name": 1}, "queue name 'bad name'"),
        ("JOBADMIN_STALL_THRESHOLD", 0, "must be more than 0"),
        ("JOBADMIN_HISTORY_DAYS", 2.5, "must be a whole number"),
        ("JOBADMIN_RELAY_LISTEN", "yes", "must be True or False"),
        ("JOBADMIN_TRUSTED_PROXIES", "10.0.0.1", "must be a list of strings"),
    ],
)
def test_each_kind_of_bad_value_is_named(name: str, value: object, message: str) -> None:
    with override_settings(**{name: value}):
        errors = conf.check_settings()
    assert [error.id for error in errors] == ["jobadmin.E001"]
    assert errors[0].msg.startswith(f"{name} {message}")


def test_a_cluster_timeout_shorter_than_the_longest_job_is_a_warning(settings: object) -> None:
    with override_settings(Q_CLUSTER={"timeout": 60, "retry": 120}, JOBADMIN_MAX_JOB_TIMEOUT=3600):
        errors = conf.check_settings()
    assert [error.id for error in errors] == ["jobadmin.W002"]
    assert "shorter than JOBADMIN_MAX_JOB_TIMEOUT" in errors[0].msg


def test_the_project_settings_pass_the_check() -> None:
    assert conf.check_settings() == []


PROBE = """
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from django.contrib.auth.models import User
client = Client()
answers = {
    "jobs": client.get("/ops/api/jobs/").status_code,
    "token": client.post("/ops/api/auth/token/", {"username": "x", "password": "y"}).status_code,
    "unknown": client.get("/ops/api/nothing-here/").status_code,
}
client.force_login(User.objects.create_user("someone", password="a-long-password"))
answers["unknown-type"] = client.post(
    "/ops/api/jobs/", {"type": "no-such-type", "params": {}}, content_type="application/json"
).status_code
answers["bad-filter"] = client.get("/ops/api/jobs/?status=bogus").status_code
print(json.dumps(answers))
"""


def test_the_hosts_rest_framework_settings_change_nothing_of_jobadmins_api(tmp_path: Path) -> None:
    """A host whose own API is open to anyone, with its own error handler and no throttle rates."""
    hostile = (
        'REST_FRAMEWORK = {"DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],'
        ' "DEFAULT_AUTHENTICATION_CLASSES": [], "DEFAULT_THROTTLE_CLASSES": [], "DEFAULT_THROTTLE_RATES": {},'
        ' "DEFAULT_FILTER_BACKENDS": [],'
        ' "EXCEPTION_HANDLER": "rest_framework.views.exception_handler"}\nALLOWED_HOSTS = ["testserver"]'
    )
    (tmp_path / "probe.py").write_text(PROBE)
    result = _host_check(tmp_path, extra=hostile, command=("shell", "-c", PROBE))
    assert result.returncode == 0, result.stderr
    answers = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert answers == {"jobs": 401, "token": 400, "unknown": 404, "unknown-type": 400, "bad-filter": 400}
