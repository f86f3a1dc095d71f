"""Fixtures of the console tests: a bridge with the console on (over SQLite and over the real
PostgreSQL: every test that takes ``console_settings`` runs on both), a logged-in client, and
direct SQL on the test's database for set-up and checks (:class:`Rows`)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from bridge.settings import Settings
from bridge.store.postgres import split_url
from bridge.store.reports_postgres import numbered

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def log_in(client: TestClient, password: str = PASSWORD) -> str:
    """Log in; the CSRF token of the new session."""
    r = await client.post("/admin/login", data={"password": password}, allow_redirects=False)
    assert r.status == 303, await r.text()
    page = await client.get("/admin/")
    assert page.status == 200
    return csrf_of(await page.text())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: Any) -> str | None:
    """None for SQLite (the file in tmp_path), else the URL of a fresh PostgreSQL schema."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture
def console_settings(
    make_settings: Callable[..., Settings], backend: str | None
) -> Callable[..., Settings]:
    def make(**kw: Any) -> Settings:
        admin = {"password": PASSWORD, **kw.pop("admin", {})}
        if backend is not None:
            kw["storage"] = {"url": backend, **kw.get("storage", {})}
        return make_settings(admin=admin, **kw)

    return make


class Rows:
    """SQL straight on the bridge's database (``?`` placeholders on both backends)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pg: asyncpg.Connection | None = None
        self._lite: sqlite3.Connection | None = None

    async def _conn(self) -> Any:
        url = self._settings.storage.url
        if url is None:
            if self._lite is None:
                self._lite = sqlite3.connect(self._settings.storage.path, isolation_level=None)
            return self._lite
        if self._pg is None:
            dsn, schema = split_url(url.get_secret_value())
            self._pg = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        return self._pg

    async def all(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = await self._conn()
        if isinstance(conn, sqlite3.Connection):
            return conn.execute(sql, args).fetchall()
        return [tuple(r) for r in await conn.fetch(numbered(sql), *args)]

    async def val(self, sql: str, *args: Any) -> Any:
        found = await self.all(sql, *args)
        return found[0][0] if found else None

    async def run(self, sql: str, *args: Any) -> None:
        conn = await self._conn()
        if isinstance(conn, sqlite3.Connection):
            conn.execute(sql, args)
        else:
            await conn.execute(numbered(sql), *args)

    async def until(self, sql: str, expected: Any, timeout: float = 10.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if await self.val(sql) == expected:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{sql} never gave {expected!r} (last {await self.val(sql)!r})")

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._lite is not None:
            self._lite.close()


@pytest.fixture
async def sql() -> AsyncIterator[Callable[[Settings], Rows]]:
    opened: list[Rows] = []

    def open_(settings: Settings) -> Rows:
        opened.append(Rows(settings))
        return opened[-1]

    yield open_
    for r in opened:
        await r.close()
