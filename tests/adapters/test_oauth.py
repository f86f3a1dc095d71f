"""Shared OAuth token handling: persisted pairs, early refresh, one refresh after a 401."""

from __future__ import annotations

import asyncio

import pytest

from bridge.adapter.errors import Permanent
from bridge.adapter.oauth import OAuthTokens, TokenPair
from bridge.store.sqlite import SQLiteStorage
from bridge.store.state import AdapterState
from tests.conftest import FakeClock


@pytest.fixture
async def db(tmp_path):
    database = await SQLiteStorage.open(tmp_path / "o.db")
    yield database
    await database.close()


def refresher(calls: list[str], clock: FakeClock, lifetime: float = 3600):
    async def refresh(token: str) -> TokenPair:
        calls.append(token)
        await asyncio.sleep(0)
        n = len(calls)
        return TokenPair(f"access-{n}", f"refresh-{n}", clock() + lifetime)

    return refresh


async def test_pair_is_persisted_and_survives_restart(db):
    clock, calls = FakeClock(), []
    tokens = OAuthTokens(
        AdapterState(db, "crm"), refresher(calls, clock), initial_refresh_token="first", clock=clock
    )
    assert await tokens.access_token() == "access-1"
    assert calls == ["first"]
    # A new process: the stored pair is used, the (spent) initial token is not.
    again = OAuthTokens(
        AdapterState(db, "crm"), refresher(calls, clock), initial_refresh_token="first", clock=clock
    )
    assert await again.access_token() == "access-1"
    clock.advance(3600 - 60)  # inside the early-refresh margin
    assert await again.access_token() == "access-2"
    assert calls == ["first", "refresh-1"]


async def test_concurrent_jobs_refresh_once(db):
    clock, calls = FakeClock(), []
    tokens = OAuthTokens(
        AdapterState(db, "crm"), refresher(calls, clock), initial_refresh_token="first", clock=clock
    )
    got = await asyncio.gather(*(tokens.access_token() for _ in range(10)))
    assert set(got) == {"access-1"} and len(calls) == 1
    # Two jobs both saw a 401 for access-1: only one refresh happens.
    a, b = await asyncio.gather(
        tokens.refresh_after_401("access-1"), tokens.refresh_after_401("access-1")
    )
    assert a == b == "access-2" and len(calls) == 2


async def test_missing_refresh_token_is_permanent(db):
    tokens = OAuthTokens(
        AdapterState(db, "crm"),
        refresher([], FakeClock()),
        initial_refresh_token=None,
        clock=FakeClock(),
    )
    with pytest.raises(Permanent, match="refresh_token"):
        await tokens.access_token()


async def test_a_newly_configured_grant_replaces_the_stored_pair(db):
    clock, calls = FakeClock(), []
    old = OAuthTokens(
        AdapterState(db, "crm"), refresher(calls, clock), initial_refresh_token="first", clock=clock
    )
    assert await old.access_token() == "access-1"
    # Same grant after a restart: the stored pair is kept (no refresh).
    same = OAuthTokens(
        AdapterState(db, "crm"), refresher(calls, clock), initial_refresh_token="first", clock=clock
    )
    assert await same.access_token() == "access-1" and calls == ["first"]
    # The admin re-authorized and pasted a new refresh token: it wins over the stored pair.
    new = OAuthTokens(
        AdapterState(db, "crm"),
        refresher(calls, clock),
        initial_refresh_token="second-grant",
        clock=clock,
    )
    assert await new.access_token() == "access-2"
    assert calls == ["first", "second-grant"]
