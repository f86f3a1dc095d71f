"""A token pair refreshed by another process is adopted, not fought.

``pbx-bridge check`` beside ``serve`` (here: two independent Database connections to one file,
each with its own adapter, as two processes have) must never spend a single-use refresh token
the other still holds in memory. The fake vendor below issues single-use refresh tokens and
refuses a spent one with ``invalid_grant``, as Pipedrive, amoCRM and HubSpot do.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest

from adapters.pipedrive.fake import call_log, search_answer, search_item
from bridge.adapter.locks import FileLocks
from bridge.adapter.oauth import OAuthTokens, TokenPair
from bridge.samples import sample
from bridge.store.sqlite import SQLiteStorage
from bridge.store.state import AdapterState
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

OAUTH = "https://oauth.pipedrive.com/oauth/token"
COMPANY = "https://acme.pipedrive.com"
TABLE = {
    "client_id": "b4b4b4b4",
    "client_secret": "pd-secret-value",
    "refresh_token": "refresh-0",
    "rate_limit": 0,
}


class SingleUseVendor:
    """An OAuth server whose refresh tokens work once, and whose old access tokens die."""

    def __init__(self) -> None:
        self.n = 0
        self.spent: list[str] = []
        self.refused: list[str] = []

    def live_refresh(self) -> str:
        return f"refresh-{self.n}"

    def live_access(self) -> str:
        return f"access-{self.n}"

    def token(self, request: httpx.Request) -> httpx.Response:
        sent = dict(httpx.QueryParams(request.content.decode()))["refresh_token"]
        if sent != self.live_refresh():
            self.refused.append(sent)
            return httpx.Response(400, json={"error": "invalid_grant", "message": "spent"})
        self.spent.append(sent)
        self.n += 1
        return httpx.Response(
            200,
            json={
                "access_token": self.live_access(),
                "refresh_token": self.live_refresh(),
                "expires_in": 3599,
                "api_domain": COMPANY,
            },
        )

    def api(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.live_access()}":
            return httpx.Response(401, json={"success": False, "error": "unauthorized access"})
        if request.url.path.endswith("/persons/search"):
            return search_answer(search_item(51, "Anna", ["+7 (950) 222-29-19"], owner=7001))
        if request.url.path.endswith("/users/me"):
            return httpx.Response(200, json={"success": True, "data": {"id": 1, "name": "Me"}})
        if request.url.path.endswith("/users"):
            return httpx.Response(200, json={"success": True, "data": []})
        return call_log("CA1")


@pytest.fixture
def vendor(no_unmocked_http) -> SingleUseVendor:
    fake = SingleUseVendor()
    no_unmocked_http.post(OAUTH).mock(side_effect=fake.token)
    no_unmocked_http.route(host="acme.pipedrive.com").mock(side_effect=fake.api)
    return fake


async def test_check_beside_serve_never_breaks_serve(tmp_path, vendor):
    clock = FakeClock()
    # Two harnesses on one database file: two connections, two adapters, like two processes.
    serve = await AdapterHarness.open(tmp_path, "pipedrive", TABLE, clock=clock)
    check = await AdapterHarness.open(tmp_path, "pipedrive", TABLE, clock=clock)
    try:
        job = await serve.deliver(sample("call_end", uuid="adopt-1", now=clock()))
        assert job.status == "done", job.last_error
        assert vendor.spent == ["refresh-0"]

        # An hour later `check` runs first: it refreshes (spending refresh-1, which serve
        # holds in memory) ...
        clock.advance(3600)
        await check.adapter.check()
        assert vendor.spent == ["refresh-0", "refresh-1"]

        # ... and serve adopts the stored pair instead of spending refresh-1 again.
        job = await serve.deliver(sample("call_end", uuid="adopt-2", now=clock()))
        assert job.status == "done", job.last_error
        assert vendor.refused == [] and vendor.spent == ["refresh-0", "refresh-1"]

        # The vendor revoked serve's access token (check refreshed again meanwhile, before
        # expiry): serve's 401 re-reads the stored pair, it does not refresh.
        await check.adapter.api.auth.tokens.refresh_after_401("access-2")
        job = await serve.deliver(sample("call_end", uuid="adopt-3", now=clock()))
        assert job.status == "done", job.last_error
        assert vendor.refused == [] and len(vendor.spent) == 3
    finally:
        await check.close()
        await serve.close()


def tokens_on(db: SQLiteStorage, clock: FakeClock, calls: list[str]) -> OAuthTokens:
    async def refresh(token: str) -> TokenPair:
        calls.append(token)
        await asyncio.sleep(0.05)  # a slow vendor: the other side must wait, not race
        return TokenPair(f"access-{len(calls)}", f"refresh-{len(calls)}", clock() + 3600)

    return OAuthTokens(
        AdapterState(db, "crm"),
        refresh,
        initial_refresh_token="first",
        clock=clock,
        locks=FileLocks.beside(db.db.path),
        lock_name="oauth:crm",
    )


async def test_two_connections_refreshing_at_once_refresh_once(tmp_path):
    clock, calls = FakeClock(), []
    a = await SQLiteStorage.open(tmp_path / "shared.db")
    b = await SQLiteStorage.open(tmp_path / "shared.db")
    try:
        got = await asyncio.gather(
            tokens_on(a, clock, calls).access_token(), tokens_on(b, clock, calls).access_token()
        )
        assert got == ["access-1", "access-1"] and calls == ["first"]
    finally:
        await a.close()
        await b.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from bridge.adapter.locks import FileLocks

    async def main():
        async with FileLocks.beside(sys.argv[1]).hold("oauth:crm"):
            print("held", flush=True)
            time.sleep(float(sys.argv[2]))

    asyncio.run(main())
    """
)


async def test_another_process_holding_the_lock_is_waited_for(tmp_path):
    db = await SQLiteStorage.open(tmp_path / "shared.db")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db.db.path), "0.6"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with FileLocks.beside(db.db.path).hold("oauth:crm"):
            waited = loop.time() - started
        assert waited > 0.3  # it waited for the child, without blocking this loop
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        # While waiting on another process, the event loop keeps running.
        child2 = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db.db.path), "0.4"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child2.stdout is not None and child2.stdout.readline().strip() == "held"
        ticker = asyncio.create_task(tick())
        async with FileLocks.beside(db.db.path).hold("oauth:crm"):
            pass
        ticker.cancel()
        child2.wait(5)
        assert ticks > 10
    finally:
        child.wait(5)
        await db.close()


async def test_a_stored_pair_survives_in_json(tmp_path):
    # The record format other processes (and older versions) read is unchanged.
    clock, calls = FakeClock(), []
    db = await SQLiteStorage.open(tmp_path / "x.db")
    try:
        await tokens_on(db, clock, calls).access_token()
        stored = json.loads(await AdapterState(db, "crm").get("oauth") or "{}")
        assert stored["access_token"] == "access-1" and stored["refresh_token"] == "refresh-1"
    finally:
        await db.close()
