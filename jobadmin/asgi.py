"""ASGI entry point: HTTP through Django, websockets through Channels."""

import asyncio
import gc
import os
import sys
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Django must be set up before routing (and the models it imports) is loaded.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware  # noqa: E402

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


def coalesce_tcp_writes() -> bool:
    """Under daphne: write each TCP connection's data once per event-loop turn, at once.

    Twisted's asyncio reactor writes by registering the socket for writability
    (``add_writer``: an ``epoll_ctl``), waiting for the next ``epoll_wait`` to report it,
    sending, and unregistering it (another ``epoll_ctl``), each step wrapped in Twisted's
    logging context. Every websocket frame paid that cycle: a third to nearly half of
    daphne's main thread under the overload benchmark (py-spy; docs/benchmarks.md, "Live
    updates"). Here a write to a connection with nothing buffered is held until the end of
    the loop turn, and then everything written to it in that turn goes out in one ``send``
    from a single callback for all connections. Only what the kernel does not take (a slow
    reader, a full socket buffer) goes through the reactor's writability path as before,
    and so does anything written to a connection that already has data waiting, is
    closing, or uses TLS. Returns whether it was installed (only on Twisted's asyncio
    reactor, i.e. when daphne serves this module).
    """
    reactor = sys.modules.get("twisted.internet.reactor")  # never install one by importing it
    loop = getattr(reactor, "_asyncioEventloop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return False
    from twisted.internet import tcp

    if getattr(tcp.Connection, "_jobadmin_coalesced", False):
        return False
    # It uses these parts of Twisted (26.x); a Twisted without them keeps its own write path.
    if not all(hasattr(tcp.Connection, name) for name in ("dataBuffer", "offset", "doWrite", "_maybePauseProducer")):
        return False
    if not hasattr(reactor, "_disconnectSelectable"):
        return False
    original_write = tcp.Connection.write
    pending: list[Any] = []

    def flush() -> None:
        connections = pending[:]
        pending.clear()
        for connection in connections:
            connection._jobadmin_pending = False
            if not connection.connected:
                continue
            # What the reactor does when the socket is writable: send what fits; an
            # exception or a finished close means the connection is gone.
            why = connection.doWrite()
            if why:
                reactor._disconnectSelectable(connection, why, False)  # type: ignore[union-attr]
            elif connection._tempDataBuffer or len(connection.dataBuffer) > connection.offset:
                connection.startWriting()  # the kernel did not take it all: wait for writability

    def write(self: Any, data: bytes) -> None:
        if type(data) is not bytes:
            original_write(self, data)  # Twisted's checks and errors
            return
        if getattr(self, "_jobadmin_pending", False):
            if data and self.connected and not self._writeDisconnected:
                self._tempDataBuffer.append(data)
                self._tempDataLen += len(data)
                self._maybePauseProducer()
            return
        if (
            not data
            or self.TLS
            or not self.connected
            or self._writeDisconnected
            or self.disconnecting
            or self._tempDataBuffer
            or len(self.dataBuffer) > self.offset
        ):
            original_write(self, data)
            return
        self._tempDataBuffer.append(data)
        self._tempDataLen += len(data)
        self._jobadmin_pending = True
        if not pending:
            loop.call_soon(flush)
        pending.append(self)

    tcp.Connection.write = write  # type: ignore[method-assign]
    tcp.Connection._jobadmin_coalesced = True  # type: ignore[attr-defined]
    return True


coalesce_tcp_writes()

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()
