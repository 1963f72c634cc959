"""Websocket authentication by API token (``/ws/jobs/?token=<key>``) and the origin check."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


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


class BrowserOriginValidator(OriginValidator):
    """Refuse browsers from other origins; allow clients that send no Origin at all.

    Origin checks protect a browser user's session cookie from another site's script
    (cross-site websocket hijacking). Only browsers send ``Origin``, and a script or
    service without it must authenticate with a token anyway.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(super().valid_origin(parsed_origin))


def origin_validator(app: Any) -> BrowserOriginValidator:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(app, allowed)
