"""The window-aware limiter: never more than the limit in any window, the whole allowance
used, and a request stamped when it really leaves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.adapter import AdapterSettings
from bridge.adapter.http import CRMClient
from bridge.adapter.ratelimit import SlidingWindow, TokenBucket, Unlimited, make_limiter
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock


def window(limit: int, seconds: float, clock: FakeClock) -> SlidingWindow:
    async def sleep(delay: float) -> None:
        clock.advance(delay)

    return SlidingWindow(limit, seconds, guard=0, clock=clock, sleep=sleep)


async def test_a_backlog_goes_out_a_window_at_a_time_and_never_over() -> None:
    clock = FakeClock(0)
    limiter = window(100, 10, clock)
    sent = []
    for _ in range(350):
        await limiter.acquire()
        limiter.sending()
        sent.append(clock())
    assert sent[:100] == [0] * 100  # the whole allowance at once
    assert sent[100] == 10 and sent[300] == 30
    for i, start in enumerate(sent):  # any window: at most 100
        assert sum(1 for t in sent[i:] if t < start + 10) <= 100


async def test_a_request_held_back_is_counted_from_when_it_left() -> None:
    clock = FakeClock(0)
    limiter = window(1, 1.0, clock)
    await limiter.acquire()
    clock.advance(0.3)  # the granted request only left 0.3 s later
    limiter.sending()
    await limiter.acquire()
    assert clock() == pytest.approx(1.3)


async def test_the_guard_widens_the_window() -> None:
    clock = FakeClock(0)

    async def sleep(delay: float) -> None:
        clock.advance(delay)

    limiter = SlidingWindow(2, 1.0, guard=0.02, clock=clock, sleep=sleep)
    for _ in range(3):
        await limiter.acquire()
    assert clock() == pytest.approx(1.02)


async def test_a_spent_limiter_waits_one_window_before_its_first_request() -> None:
    clock = FakeClock(0)
    limiter = window(100, 10, clock)
    limiter.spent()  # another process may have used the allowance a moment ago
    await limiter.acquire()
    assert clock() == 10  # without it: 0, and 100 more on top of the other's 100

    async def sleep(delay: float) -> None:
        clock.advance(delay)

    bucket = TokenBucket(4, clock=clock)
    bucket.spent()
    began = clock()
    monkey = pytest.MonkeyPatch()
    monkey.setattr("bridge.adapter.ratelimit.asyncio.sleep", sleep)
    try:
        await bucket.acquire()
    finally:
        monkey.undo()
    assert clock() - began == pytest.approx(0.25)  # one interval, not at once


async def test_taking_an_adapters_lead_spends_its_limiters(tmp_path: Path) -> None:
    """A replica taking an adapter over from one that just died (or a bridge restarted right
    after a kill) must not add a full window's burst to what the other one sent."""
    table = {"type": "http", "url": "http://127.0.0.1:9/hook", "secret": "s" * 24}
    h = await AdapterHarness.open(tmp_path, "crm", table | {"rate_limit": 2, "rate_window": 10})
    try:
        (limiter,) = h.adapter.ctx.limiters  # the adapter's client's
        fresh = make_limiter(2, window=10)
        await asyncio.wait_for(fresh.acquire(), 5)  # a fresh limiter: at once
        assert await h.worker._take_lead()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire(), 0.5)  # 10 s away
    finally:
        await h.close()


def test_settings_pick_the_limiter() -> None:
    assert isinstance(make_limiter(0), Unlimited)
    assert isinstance(make_limiter(7), TokenBucket)
    burst = make_limiter(10, window=10)
    assert isinstance(burst, SlidingWindow) and burst.limit == 100
    assert AdapterSettings(rate_limit=10, rate_window=10).rate_window == 10
    with pytest.raises(ValueError):
        AdapterSettings(rate_window=-1)


async def test_the_client_stamps_the_request_as_its_bytes_leave() -> None:
    class Recording(Unlimited):
        calls = 0

        def sending(self) -> None:
            self.calls += 1

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    limiter = Recording()
    client = CRMClient(base_url=str(server.make_url("/")), limiter=limiter)
    try:
        response = await client.request("POST", "/hook", json={})
        assert response.status_code == 200
        assert limiter.calls == 1
    finally:
        await client.aclose()
        await server.close()
