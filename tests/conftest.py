"""Shared fixtures. Any httpx request that a test did not mock fails the test (respx),
except to loopback servers the test itself started."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import respx
from aiohttp.test_utils import TestClient, TestServer

from bridge import logs
from bridge.app import create_app
from bridge.settings import Settings
from bridge.testing import FakeClock, plain_schedule

SAMPLES = Path(__file__).resolve().parent / "samples"  # copies of shared/onlinepbx/samples
TOKEN = "test-token-0123456789abcdef"
WEBHOOK = f"/webhooks/onlinepbx/{TOKEN}"

# the fake onlinePBX API and its fixtures; the real PostgreSQL (a fresh schema per test)
pytest_plugins = ["tests.fakes.onlinepbx", "tests.postgres"]
__all__ = ["FakeClock"]  # re-exported: tests import it from here


@pytest.fixture(autouse=True, scope="session")
def json_logs_to_stderr() -> None:
    logs.configure("DEBUG", "json")


@pytest.fixture(autouse=True)
def no_unmocked_http() -> Any:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.route(host="localhost").pass_through()
        yield mock


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**kw: Any) -> Settings:
        server = {"webhook_token": TOKEN, **kw.pop("server", {})}
        storage = {"path": str(tmp_path / "bridge.db"), **kw.pop("storage", {})}
        kw["schedule"] = plain_schedule(kw.get("schedule"))
        return Settings(server=server, storage=storage, **kw)

    return make


@pytest.fixture
async def start_bridge() -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def start(settings: Settings, **kw: Any) -> TestClient:
        client = TestClient(TestServer(create_app(settings, **kw)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for c in clients:
        await c.close()


def vendor_sample(event: str, kind: str = "json") -> Any:
    text = (SAMPLES / f"{event}.{kind}").read_text().strip()
    return json.loads(text) if kind == "json" else text


async def rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    conn = sqlite3.connect(settings.storage.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
