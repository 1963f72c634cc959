"""A TCP proxy of the tests' own that can be switched to a black hole (issue 21).

Between some processes and PostgreSQL (or Redis) it forwards bytes both ways until
``cut()``: from then on it goes on accepting connections and reading every byte from both
sides, forwards none and closes nothing, as a hung proxy or pooler does (no reset, no FIN,
and the kernel keeps ACKing, so neither keepalives nor ``tcp_user_timeout`` notice).
``heal()`` delivers what it held, in order, and forwards again, as a partition that heals
under TCP connections that survived it; a side that closed meanwhile is closed after its
bytes are through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any


class BlackHoleProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()  # set while forwarding (created on the loop below)
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blackhole-proxy", daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    # --- the test's side -------------------------------------------------------------------
    def start(self) -> BlackHoleProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def cut(self) -> None:
        self._call(self._open.clear)

    def heal(self) -> None:
        self._call(self._open.set)

    def stop(self) -> None:
        async def close_all() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, fn: Any) -> None:
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    # --- the proxy ---------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open = asyncio.Event()
        self._open.set()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        with contextlib.suppress(asyncio.CancelledError):  # the proxy stops
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read everything at once (cut or not); write it only while the proxy is open."""
        held: asyncio.Queue[bytes] = asyncio.Queue()

        async def read() -> None:
            try:
                while data := await reader.read(65536):
                    held.put_nowait(data)
            except (ConnectionError, OSError):
                pass
            held.put_nowait(b"")

        async def write() -> None:
            try:
                while True:
                    data = await held.get()
                    await self._open.wait()
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
                self._writers.discard(writer)

        await asyncio.gather(read(), write())
