"""``X-Forwarded-Proto`` only from a trusted proxy.

Django's ``SECURE_PROXY_SSL_HEADER`` believes the header from any client: behind a TLS proxy a
client on the plain port could claim ``https`` (and get ``Secure`` cookies sent over HTTP, or
skip the redirect). First in ``MIDDLEWARE``, this drops the header unless the connecting peer is
a proxy named in ``JOBADMIN_TRUSTED_PROXIES`` (the access policy's one rule), so
``request.is_secure()`` is true only for what the proxy itself says.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from jobs import policy


class TrustedProxyHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not policy.trusted_proxy(
            str(request.META.get("REMOTE_ADDR", ""))
        ):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)
