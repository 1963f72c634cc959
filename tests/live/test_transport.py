"""``live.transport`` on a real Twisted asyncio reactor, in a child process.

Each run serves one TCP connection that writes small chunks, a chunk far larger than the
socket buffer (so the kernel takes only part of it and the reactor's writability path
finishes it), more small chunks, and then closes. The client must receive every byte in
order before the close. The small writes alone must not register the socket for
writability when coalescing is on; with it off, Twisted registers it, which is what makes
the check mean something.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys
from twisted.internet import asyncioreactor

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)
from twisted.internet import protocol, reactor

from live.transport import coalesce_tcp_writes

coalesce = sys.argv[1] == "on"
installed = coalesce_tcp_writes() if coalesce else False
add_writer_calls = []
original_add_writer = loop.add_writer
loop.add_writer = lambda *a: (add_writer_calls.append(1), original_add_writer(*a))[1]
big = int(sys.argv[2])
head = b"".join(b"%06d\n" % i for i in range(1000))
expected = head + b"x" * big + b"".join(b"%06d\n" % i for i in range(1000, 1100))
result = {}


class Sender(protocol.Protocol):
    def connectionMade(self):
        before = len(add_writer_calls)  # the client's connect registered its own socket
        for i in range(1000):
            self.transport.write(b"%06d\n" % i)
        result["after_small"] = len(add_writer_calls) - before
        if big:
            self.transport.write(b"x" * big)
        for i in range(1000, 1100):
            self.transport.write(b"%06d\n" % i)
        self.transport.loseConnection()


class Receiver(protocol.Protocol):
    def connectionMade(self):
        self.chunks = []

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        result["intact"] = b"".join(self.chunks) == expected
        result["received"] = sum(map(len, self.chunks))
        reactor.stop()


server = reactor.listenTCP(0, protocol.Factory.forProtocol(Sender), interface="127.0.0.1")
protocol.ClientCreator(reactor, Receiver).connectTCP("127.0.0.1", server.getHost().port)
reactor.callLater(20, reactor.stop)
reactor.run()
result["installed"] = installed
print(json.dumps(result))
"""


def run_child(mode: str, big: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(big)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("big", [0, 8_000_000])
def test_coalesced_writes_arrive_whole_in_order_before_the_close(big: int) -> None:
    result = run_child("on", big)

    assert result["installed"] is True
    assert result["intact"] is True, f"received {result['received']} bytes"
    assert result["after_small"] == 0, "small writes went through the reactor's writability path"


def test_without_coalescing_twisted_registers_the_socket_for_each_write_burst() -> None:
    result = run_child("off", 0)

    assert result["installed"] is False
    assert result["intact"] is True
    assert result["after_small"] >= 1
