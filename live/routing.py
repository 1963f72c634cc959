"""Websocket routes: ``ws/jobs/`` under the prefix the project mounts JobAdmin at.

``jobadmin.routing.with_jobadmin(app, prefix="ops/")`` mounts the socket at ``/ops/ws/jobs/``
and records the prefix here, so the pages that open the socket are given its real path
(``websocket_path``, the ``jobadmin_ws_path`` template tag) instead of a hard-coded one.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from live.consumers import JobsConsumer

WS_PATH = "ws/jobs/"
_mounted = {"prefix": ""}


def normalise_prefix(prefix: str) -> str:
    """``"/ops"``, ``"ops"`` and ``"ops/"`` are one prefix, ``"ops/"``; ``""`` and ``"/"`` the root."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def websocket_urlpatterns(prefix: str = "") -> list[Any]:
    """The socket's route under ``prefix``, which becomes the path the pages are given."""
    _mounted["prefix"] = normalise_prefix(prefix)
    return [path(_mounted["prefix"] + WS_PATH, JobsConsumer.as_asgi())]


def websocket_path() -> str:
    """The absolute path of the socket, as mounted (``/ws/jobs/`` on the standalone project)."""
    return "/" + _mounted["prefix"] + WS_PATH
