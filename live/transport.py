"""The web process's transport tweaks, in one place.

- ``coalesce_tcp_writes``: daphne's TCP writes, once per event-loop turn per connection;
- ``websocket_auth_stack``: Channels' auth stack without the session wrapper around every send;
- ``tune_gc``: a larger young generation for the garbage collector.

About ``coalesce_tcp_writes``:

This replaces ``twisted.internet.tcp.Connection.write`` in the daphne process and relies on
Twisted internals (``dataBuffer``, ``offset``, ``_tempDataBuffer``, ``doWrite``,
``reactor._disconnectSelectable``). pyproject.toml caps Twisted below the next year's
releases; before raising the cap, run ``tests/live/test_transport.py`` and the end-to-end
websocket tests. ``JOBADMIN_COALESCE_TCP_WRITES=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings

_CONNECTION_PARTS = ("dataBuffer", "offset", "doWrite", "startWriting", "_maybePauseProducer")


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
    if not all(hasattr(tcp.Connection, name) for name in _CONNECTION_PARTS):
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


def tune_gc() -> None:
    """Fewer young-generation collections in a web process that serves sockets.

    Delivering frames allocates fast (messages, frames, buffers), and with Python's default
    threshold (700) daphne under overload ran ~70 young and, every few seconds, a full
    collection over every object of 1,000 connections: 3.4 s of collection in a 25 s run,
    full ones of 0.4-0.8 s that stalled every socket (measured with gc.callbacks). A young
    generation of ``JOBADMIN_WEB_GC_THRESHOLD`` (20,000; 0 keeps Python's) made it 0.3 s, no
    full collection, and 20 % less CPU per frame; the memory cost is the young objects.
    """
    threshold = int(settings.JOBADMIN_WEB_GC_THRESHOLD)
    current = gc.get_threshold()
    if threshold > current[0]:
        gc.set_threshold(threshold, *current[1:])
