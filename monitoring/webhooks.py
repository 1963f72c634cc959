"""Where an alert webhook may point, and a POST that goes only there (docs/security.md, "Webhooks").

A rule's webhook is a URL that staff type in; the monitor then POSTs from inside the network.
Without a fence that is a request forgery: ``http://169.254.169.254/`` (cloud metadata),
``http://127.0.0.1:6379/``, an internal admin. So a webhook's host must resolve only to global
addresses, unless an address is in ``JOBADMIN_WEBHOOK_ALLOWED_NETWORKS``; the rule is refused
when it is saved (a form error) and again when it is sent. At send time the connection goes to
the very address that was checked (the name is not resolved a second time, so a DNS answer
that changes in between cannot move it inside), with the name kept for ``Host`` and TLS.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from jobs.policy import address_in


class WebhookRefused(ValueError):
    """The URL may not be a webhook; the message says why."""


def _allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global or address_in(address, settings.JOBADMIN_WEBHOOK_ALLOWED_NETWORKS)


def resolve_webhook(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, address)`` for ``url``, the address one it may connect to; or
    ``WebhookRefused``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("A webhook must be an http:// or https:// URL with a host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"The host {parts.hostname!r} does not resolve ({exc}).") from None
    addresses = sorted({str(info[4][0]) for info in found})
    refused = [address for address in addresses if not _allowed(address)]
    if refused:
        raise WebhookRefused(
            f"{parts.hostname!r} resolves to {', '.join(refused)}: a private, loopback or otherwise "
            "internal address (allow its network with JOBADMIN_WEBHOOK_ALLOWED_NETWORKS)."
        )
    return parts.scheme, parts.hostname, port, addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post_json(url: str, body: bytes, *, timeout: float) -> int:
    """POST ``body`` to ``url`` (checked by ``resolve_webhook``); the HTTP status. Connection
    errors and time-outs raise ``OSError``."""
    scheme, host, port, address = resolve_webhook(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout=timeout)
    try:
        connection.request(
            "POST", target, body=body, headers={"Content-Type": "application/json", "User-Agent": "JobAdmin"}
        )
        return connection.getresponse().status
    finally:
        connection.close()
