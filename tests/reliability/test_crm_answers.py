"""What a CRM answers cannot hurt the bridge: an endless or decompression-bomb body is cut at
``MAX_ANSWER_BYTES`` while it streams in (memory stays near the cap), and a CRM that trickles
its answer a byte at a time meets a total deadline per request, not one per read.

Both go through :class:`CRMClient`, which every adapter (``ctx.http_client``) and the onlinePBX
client use; the onlinePBX client is exercised too, through its fake.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.adapter.errors import RetryLater
from bridge.adapter.http import MAX_ANSWER_BYTES, CRMClient
from bridge.adapter.ratelimit import TokenBucket

BIG = 64 * MAX_ANSWER_BYTES  # what an endless answer sends before the bridge must stop it
# ~256 MB of zeros gzips to ~250 KB: the "300 KB gzip bomb"
BOMB = gzip.compress(b"\0" * (BIG), compresslevel=9)


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * 65536
    sent = 0
    try:
        while sent < BIG:
            await response.write(chunk)
            sent += len(chunk)
    except (ConnectionResetError, ConnectionError):
        pass
    return response


async def _bomb(request: web.Request) -> web.Response:
    return web.Response(
        body=BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


async def _small_gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b'{"ok": true}'),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


async def _trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for _ in range(600):
            await response.write(b" ")
            await asyncio.sleep(0.05)  # every read is well within the per-read timeout
    except (ConnectionResetError, ConnectionError):
        pass
    return response


@pytest.fixture
async def crm() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/endless", _endless)
    app.router.add_get("/bomb", _bomb)
    app.router.add_get("/small", _small_gzip)
    app.router.add_get("/trickle", _trickle)
    app.router.add_route("*", "/pbx.example.com/{tail:.*}", _bomb)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


def _client(base: str, timeout: float = 15.0) -> CRMClient:
    return CRMClient(base_url=base, limiter=TokenBucket(0, 1), timeout=timeout)


async def _peak(coro: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        try:
            result: Any = await coro
        except RetryLater as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("path", ["endless", "bomb"])
async def test_a_huge_or_bomb_answer_is_cut_at_the_cap(crm: str, path: str) -> None:
    client = _client(crm)
    try:
        result, peak = await _peak(client.request("GET", path))
    finally:
        await client.aclose()
    assert isinstance(result, RetryLater), result
    assert "larger than" in result.reason and f"{MAX_ANSWER_BYTES}" in result.reason.replace(
        ",", ""
    )
    # held at most the cap plus one decoded chunk and the bookkeeping, never the whole answer
    assert peak < 3 * MAX_ANSWER_BYTES, f"peak {peak / 1e6:.1f} MB"
    print(f"CRM ANSWER {path}: peak {peak / 1e6:.1f} MB for a {BIG / 1e6:.0f} MB answer")


async def test_a_normal_gzip_answer_still_reads(crm: str) -> None:
    client = _client(crm)
    try:
        response = await client.request("GET", "small")
    finally:
        await client.aclose()
    assert response.json() == {"ok": True}


async def test_a_trickling_answer_meets_a_total_deadline(crm: str) -> None:
    client = _client(crm, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(RetryLater, match="timed out"):
            await client.request("GET", "trickle")
    finally:
        await client.aclose()
    took = time.monotonic() - started
    assert took < 1.5, f"took {took:.1f} s against a 0.5 s timeout"
    print(f"CRM ANSWER trickle: given up after {took:.2f} s (timeout 0.5 s)")


async def test_the_onlinepbx_client_is_capped_too(crm: str, tmp_path: Any) -> None:
    from bridge.onlinepbx.client import ApiError, OnlinePBX
    from bridge.settings import OnlinePBXSettings
    from bridge.store.sqlite import SQLiteStorage

    db = await SQLiteStorage.open(tmp_path / "b.db")
    await db.put_meta("onlinepbx_auth:pbx.example.com", "k:v")
    pbx = OnlinePBX(
        OnlinePBXSettings(domain="pbx.example.com", api_key="secret-key", base_url=crm), db
    )
    try:
        with pytest.raises(ApiError, match="larger than"):
            await pbx.call("mongo_history/search.json", {})
    finally:
        await pbx.aclose()
        await db.close()
