"""A loopback stand-in for the load balancer in front of several replicas.

    python -m bench.balancer LISTEN_PORT UPSTREAM_PORT [UPSTREAM_PORT ...]

Round robin by connection (what an L4 balancer does with keep-alive connections): each
accepted connection goes to the next upstream; a refused connection is tried on the next one
(as a real balancer does, and onlinePBX, which never retries a webhook, does not), and only
when every upstream refuses is the client's connection closed. Bytes are then relayed both
ways untouched. Written on asyncio's protocol layer (no streams, no per-chunk task) so that
it costs as little CPU as a Python relay can: on 2 cores it still takes a share, which is why
``bench.replicas`` measures the bare app behind it too.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

HOST = "127.0.0.1"


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection: what it receives it writes to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []  # client bytes that arrived before the upstream did

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # Back-pressure: a slow reader on one side pauses reading on the other.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Balancer:
    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self.refused = 0

    def accept(self) -> _Pipe:
        client = _Pipe()
        asyncio.get_running_loop().create_task(self._connect(client))
        return client

    async def _connect(self, client: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        first = next(self._next)
        for i in range(len(self.upstreams)):
            port = self.upstreams[(first + i) % len(self.upstreams)]
            try:
                _, upstream = await loop.create_connection(_Pipe, HOST, port)
            except OSError:
                self.refused += 1
                continue
            if client.transport is None or client.transport.is_closing():
                upstream.transport.close()  # type: ignore[union-attr]
                return
            upstream.peer, client.peer = client, upstream
            for chunk in client.pending:
                upstream.transport.write(chunk)  # type: ignore[union-attr]
            client.pending.clear()
            return
        if client.transport is not None:
            client.transport.close()  # every replica refused


async def serve(port: int, upstreams: list[int]) -> None:
    balancer = Balancer(upstreams)
    server = await asyncio.get_running_loop().create_server(
        balancer.accept, HOST, port, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    asyncio.run(serve(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
