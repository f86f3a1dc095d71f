"""Slow and oversized clients cannot exhaust memory or hold the webhook: 10 MB bodies are
refused without being read into memory, trickling bodies are cut off, and the PBX is still
served while ``SLOW_CLIENTS`` slowloris connections hang on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.receive import webhook
from bridge.samples import sample
from tests.conftest import TOKEN, WEBHOOK, rows
from tests.reliability.process import BridgeProcess, free_port, query, write_settings
from tests.reliability.sizes import SLOW_CLIENTS

TEN_MB = 10 * 1024 * 1024


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _chunks(size: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for _ in range(size // chunk):
        yield b"a" * chunk


async def test_ten_megabyte_bodies_are_refused_without_being_held(tmp_path: Path) -> None:
    port = free_port()
    config = write_settings(
        tmp_path / "settings.toml",
        {
            "server": {"host": "127.0.0.1", "port": port, "webhook_token": TOKEN},
            "storage": {"path": str(tmp_path / "bridge.db")},
        },
    )
    bridge = BridgeProcess(config, port, tmp_path)  # its own process: its memory alone
    big = b"a" * TEN_MB
    try:
        await bridge.start()
        assert bridge.proc is not None
        before = _rss_mb(bridge.proc.pid)
        async with httpx.AsyncClient(base_url=bridge.base_url, timeout=10) as client:
            url = f"/webhooks/onlinepbx/{TOKEN}"
            declared = [client.post(url, content=big) for _ in range(10)]
            chunked = [client.post(url, content=_chunks(TEN_MB)) for _ in range(10)]
            answers = await asyncio.gather(*declared, *chunked, return_exceptions=True)
            grown = _rss_mb(bridge.proc.pid) - before
            fresh = await client.post(url, data=sample("call_end"))
        await bridge.stop()
    finally:
        await bridge.close()
    for answer in answers:
        # Refused with 413, or the connection closed on a sender still pushing its body.
        if isinstance(answer, httpx.Response):
            assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert sum(isinstance(a, httpx.Response) for a in answers) >= 10, answers
    print(f"\nOVERSIZE 20 × 10 MB offered; bridge RSS grew {grown:.1f} MB")
    assert grown < 20, f"200 MB offered, the bridge grew {grown:.1f} MB"
    assert fresh.status_code == 200
    assert query(tmp_path / "bridge.db", "SELECT COUNT(*) FROM events") == [(1,)]


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _slowloris(port: int, body: bool) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /webhooks/onlinepbx/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
    if body:  # headers done, a body promised and never sent
        head += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def test_slow_clients_do_not_hold_up_the_pbx(
    make_settings: Callable[..., Any],
    start_bridge: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook, "BODY_SECONDS", 0.5)
    settings = make_settings()
    client = await start_bridge(settings)
    port = client.server.port
    slow = [await _slowloris(port, body=n % 2 == 0) for n in range(SLOW_CLIENTS)]
    try:
        for _ in range(5):  # the PBX is answered at once, every time
            r = await asyncio.wait_for(client.post(WEBHOOK, data=sample("call_end")), 2)
            assert r.status == 200
        # The stalled bodies are cut off with a 408 (the header-only ones are aiohttp's to
        # drop: at keepalive_timeout after connecting, 75 s under `serve`).
        statuses = await asyncio.gather(*(_status(reader) for reader, _ in slow[::2]))
        assert all(s == 408 for s in statuses), statuses
    finally:
        for _, writer in slow:
            writer.close()
    assert await rows(settings, "SELECT COUNT(*) FROM events") == [(5,)]


async def _status(reader: asyncio.StreamReader) -> int:
    """The status the server answered on this connection."""
    line = await asyncio.wait_for(reader.readline(), 3)
    return int(line.split()[1])
