"""Websocket authentication by API token (``/ws/jobs/?token=<key>``) and the origin check."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser

from jobs import policy


def user_for_token(key: str) -> Any:
    """The active user of an API token, read afresh (permissions not cached yet); anonymous otherwise."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class _SessionOnly:
    """What ``django.contrib.auth.get_user`` reads of a request: its session."""

    def __init__(self, session: Any) -> None:
        self.session = session


def user_for_session(session_key: str) -> Any:
    """The user a session still authenticates, read afresh: anonymous once it was flushed (a
    logout), expired or deleted, its user deactivated, or its password changed (Django's own
    ``get_user``, which also checks the session's hash of the password)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return get_user(_SessionOnly(store))  # type: ignore[arg-type]


def user_by_pk(pk: Any) -> Any:
    """A socket authenticated by neither (its scope's user was set by the host): the user by id."""
    from django.contrib.auth import get_user_model

    user = get_user_model()._default_manager.filter(pk=pk).first()
    return user if user is not None and user.is_active else AnonymousUser()


# How an open socket is authenticated, to check again (live.consumers): ("token", key),
# ("session", key) or ("user", pk).
Identity = tuple[str, Any]


def identity_of(scope: Any) -> Identity:
    if scope.get(TOKEN_SCOPE_KEY):
        return ("token", scope[TOKEN_SCOPE_KEY])
    session = scope.get("session")
    key = getattr(session, "session_key", None) if session is not None else None
    if key:
        return ("session", key)
    return ("user", scope["user"].pk)


def user_of(identity: Identity) -> Any:
    """The user ``identity`` authenticates now (fresh from the database), or anonymous."""
    kind, key = identity
    if kind == "token":
        return user_for_token(key)
    if kind == "session":
        return user_for_session(key)
    return user_by_pk(key)


TOKEN_SCOPE_KEY = "jobadmin_token"
_user_for_token = database_sync_to_async(user_for_token)


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
                user = await _user_for_token(keys[0][:64])
                # The key is kept in the scope: an open socket checks that its token still exists.
                scope = dict(scope, user=user, **({TOKEN_SCOPE_KEY: keys[0][:64]} if user.is_authenticated else {}))
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
