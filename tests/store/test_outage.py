"""A PostgreSQL outage under a running bridge: webhooks get 503 (never a 200 that was not
committed), /readyz is red, and both recover by themselves when the server is back.

The outage is a loopback TCP proxy in front of the real server that the test cuts (every
connection reset, new ones refused) and restores, as a failover or a network cut would.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

from bridge.keys import DB
from bridge.samples import sample
from tests.conftest import WEBHOOK
from tests.reliability.process import free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()  # RST: the server vanished
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def _wait(check, seconds: float = 15.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_postgres_outage_answers_503_and_recovers(
    postgres_url, make_settings, start_bridge
) -> None:
    target = urlsplit(postgres_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.up()
    try:
        settings = make_settings(
            # post-call only: one job per call to follow through the outage
            adapters={"local": {"events": ["log_call", "create_task"]}},
            storage={"url": via(postgres_url, proxy.port)},
            # A job whose delivery met the outage is retried soon (the backoff is not tested).
            delivery={"retry_base_seconds": 0.2, "retry_max_delay_seconds": 0.5},
        )
        client = await start_bridge(settings)
        assert (await client.post(WEBHOOK, data=sample("call_end", uuid="before"))).status == 200

        await proxy.down()
        during = await client.post(WEBHOOK, data=sample("call_end", uuid="during"))
        assert during.status == 503
        assert (await during.json())["ok"] is False
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "not writable" in (await ready.json())["checks"]["database"]

        await proxy.up()

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status == 200

        assert await _wait(ready_again), "readiness did not recover by itself"
        after = await client.post(WEBHOOK, data=sample("call_end", uuid="after"))
        assert after.status == 200, await after.text()
        storage = client.app[DB]

        async def delivered() -> bool:
            jobs = await storage.list_jobs()
            return sorted((j.uuid, j.status) for j in jobs) == [
                ("after", "done"),
                ("before", "done"),
            ]

        # The 503'd event was never stored; the other two are delivered, the worker having
        # come back by itself too.
        jobs = [(j.uuid, j.status, j.last_error) for j in await storage.list_jobs()]
        assert await _wait(delivered, 45), jobs  # a job cut mid-query: <= COMMAND_TIMEOUT
    finally:
        await proxy.down()
