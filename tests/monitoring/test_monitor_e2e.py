"""End to end with real processes: workers (qcluster), the monitor loop and the web server (daphne).

Three ``demo`` jobs that fail within a minute must raise the critical ``failure-burst``
alert: it appears in ``/api/alerts/`` and reaches a websocket client subscribed to
``alerts`` as a ``job-alert``. On the way, the monitor must see the live workers through
the shared cache (django-q2 keeps cluster stats there) and must be the only monitor.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from monitoring.builtin_rules import ensure_builtin_rules
from monitoring.models import AlertRule, MetricSample
from tests.conftest import child_env, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def test_three_failing_demo_jobs_raise_a_critical_alert_seen_in_the_api_and_on_the_websocket(
    processes: Any, staff_user: Any
) -> None:
    # An earlier transactional test's flush may have emptied the table the migration filled.
    ensure_builtin_rules(AlertRule)
    token = Token.objects.create(user=staff_user).key
    port = _free_port()
    fast = {"JOBADMIN_ALERTS_INTERVAL": "0.5", "JOBADMIN_METRICS_INTERVAL": "0.5"}
    processes.qcluster()
    monitor = processes.start("manage.py", "monitor", env=child_env(**fast), name="monitor")
    processes.start("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "jobadmin.asgi:application", name="daphne")
    wait_for(lambda: _port_open(port), timeout=30, message="daphne did not start")
    wait_for(lambda: b"monitor: running" in processes.log_of(monitor), timeout=30, message="monitor did not start")
    second = processes.start("manage.py", "monitor", env=child_env(**fast), name="monitor2")
    api = Api(port, token)

    # Worker liveness across processes: the monitor's samples count the cluster's workers.
    wait_for(
        lambda: MetricSample.objects.filter(live_workers__gt=0).exists(),
        timeout=30,
        message="the monitor never saw a live worker",
    )
    # Exactly one monitor: the second one waits for the lock and does nothing.
    assert second.poll() is None
    assert b"monitor: running" not in processes.log_of(second)

    with connect(f"ws://127.0.0.1:{port}/ws/jobs/?token={token}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "channel": "alerts"}))
        wait_for(lambda: json.loads(ws.recv(timeout=10))["type"] == "subscribed", timeout=15)

        for _ in range(3):
            api.call("POST", "/api/jobs/", {"type": "demo", "params": {"items": 3, "delay_ms": 0, "fail_at": 2}})

        def critical_alert() -> Any:
            rows = api.call("GET", "/api/alerts/?status=open")["results"]
            return next((a for a in rows if a["rule"] == "failure-burst"), None)

        alert = wait_for(critical_alert, timeout=60, interval=0.3, message="no failure-burst alert in /api/alerts/")
        assert alert["severity"] == "critical"
        assert alert["status"] == "open"

        deadline = time.monotonic() + 30
        received = None
        while received is None and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("type") == "job-alert" and message["alert"]["rule"] == "failure-burst":
                received = message
        assert received is not None, "no job-alert arrived on the websocket"
        assert received["alert"]["id"] == alert["id"]
        assert received["alert"]["severity"] == "critical"
        assert isinstance(received["event_id"], int)

    # Only the one alert, however many evaluations ran since.
    time.sleep(1.5)
    rows = api.call("GET", "/api/alerts/?status=open")["results"]
    assert [a["id"] for a in rows if a["rule"] == "failure-burst"] == [alert["id"]]
