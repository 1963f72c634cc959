"""Websocket authentication by API token (``/ws/jobs/?token=<key>``) and the origin check."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser

from jobs import policy


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware:
    """Sets ``scope["user"]`` from ``?token=`` when the session did not authenticate."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if not (user is not None and user.is_authenticated):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            keys = query.get("token")
            if keys and keys[0]:
                scope = dict(scope, user=await _user_for_token(keys[0][:64]))
        return await self.app(scope, receive, send)


class BrowserOriginValidator:
    """Refuse browsers from origins the policy does not allow; allow clients that send no Origin.

    Origin checks protect a browser user's session cookie from another site's script
    (cross-site websocket hijacking). Only browsers send ``Origin``, and a script or
    service without it must authenticate with a token anyway. Scheme, host and port are
    compared (``jobs.policy.origin_allowed``) against the request's own origin and
    ``JOBADMIN_CORS_ORIGINS``; behind a proxy named in ``JOBADMIN_TRUSTED_PROXIES`` the
    scheme is the one it forwards (``X-Forwarded-Proto``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin is not None and not policy.origin_allowed(
            origin=origin, scheme=_scheme(scope, headers), host=headers.get("host", "")
        ):
            # Refused before accept: the client sees a failed handshake (HTTP 403).
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def _scheme(scope: Any, headers: dict[str, str]) -> str:
    """``http`` or ``https``: the socket's own, or the one a trusted proxy forwarded."""
    own = "https" if scope.get("scheme") in ("wss", "https") else "http"
    peer = (scope.get("client") or ("", 0))[0]
    forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and policy.trusted_proxy(str(peer)):
        return forwarded
    return own


def origin_validator(app: Any) -> BrowserOriginValidator:
    return BrowserOriginValidator(app)
