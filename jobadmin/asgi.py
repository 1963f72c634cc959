"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Django must be set up before routing (and the models it imports) is loaded.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402

from jobadmin.tcp_writes import coalesce_tcp_writes  # noqa: E402
from monitoring.middleware import TokenAuthMiddleware, origin_validator  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402


class WebsocketSessionMiddleware(SessionMiddleware):
    """Channels' ``SessionMiddleware`` for websockets, without its wrapper around every send.

    The wrapper saves the session only on ``http.response.start``, which a websocket never
    sends, yet it looked at the lazy session (``modified``, ``is_empty()``) for every frame:
    about a tenth of daphne's main thread under the overload benchmark (py-spy). The session
    is resolved into the scope exactly as before.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def websocket_auth_stack(inner: Any) -> Any:
    """``channels.auth.AuthMiddlewareStack`` with ``WebsocketSessionMiddleware``."""
    return CookieMiddleware(WebsocketSessionMiddleware(AuthMiddleware(inner)))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_validator(websocket_auth_stack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)


if settings.JOBADMIN_COALESCE_TCP_WRITES:
    coalesce_tcp_writes()

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()
