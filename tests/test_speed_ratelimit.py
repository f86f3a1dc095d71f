"""The window-aware limiter: never more than the limit in any window, the whole allowance
used, paced so a live card never waits more than one interval, and a request counted from the
moment its bytes were all written (no CRM can count it earlier)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.adapter import AdapterSettings
from bridge.adapter.errors import RetryLater
from bridge.adapter.http import CRMClient
from bridge.adapter.ratelimit import (
    SlidingWindow,
    TokenBucket,
    Unlimited,
    first_turn,
    make_limiter,
)
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock


def window(limit: int, seconds: float, clock: FakeClock, burst: float = 1) -> SlidingWindow:
    async def sleep(delay: float) -> None:
        clock.advance(delay)

    return SlidingWindow(limit, seconds, burst=burst, guard=0, clock=clock, sleep=sleep)


async def test_a_backlog_is_paced_evenly_and_never_over() -> None:
    clock = FakeClock(0)
    limiter = window(100, 10, clock)
    sent = []
    for _ in range(350):
        await limiter.acquire()
        limiter.answered()
        sent.append(clock())
    # Without the pace the first 100 went at 0 and then waited a whole window.
    assert sent[:3] == pytest.approx([0, 0.1, 0.2])  # without the guard: exactly W/N apart
    assert sent[100] == pytest.approx(10) and sent[300] == pytest.approx(30)  # all allowance
    assert max(b - a for a, b in itertools.pairwise(sent)) == pytest.approx(0.1)
    for i, start in enumerate(sent):  # any window: at most 100
        assert sum(1 for t in sent[i:] if t < start + 10 - 1e-9) <= 100


async def test_a_card_behind_a_backlog_gets_a_slot_within_one_interval() -> None:
    """#14: 5/s per window (amoCRM-style), a backlog waiting: a first-turn request arriving
    at any moment leaves within 1/limit, never most of a window (the guard is on)."""
    clock = FakeClock(0)
    limiter = SlidingWindow(5, 1.0, clock=clock)
    timers: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(delay: float) -> None:  # a fake clock shared by several tasks
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timers.append((clock() + delay, done))
        await done

    limiter._sleep = sleep
    granted: list[tuple[str, float]] = []

    async def backlog() -> None:
        while True:
            await limiter.acquire()
            limiter.answered()  # answered at once: the fake clock only moves by sleeps
            granted.append(("post", clock()))

    async def card() -> None:
        with first_turn():
            await limiter.acquire()
        limiter.answered()
        granted.append(("card", clock()))

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def run_until(t: float) -> None:
        while True:
            await settle()
            timers.sort(key=lambda x: x[0])
            if not timers or timers[0][0] > t:
                clock.now = t
                return
            at, done = timers.pop(0)
            clock.now = max(clock.now, at)
            done.set_result(None)

    workers = [asyncio.create_task(backlog()) for _ in range(2)]
    waits = []
    for k in range(40):
        arrive = 2.0 + k * 0.737  # every phase of the interval
        await run_until(arrive)
        task = asyncio.create_task(card())
        while not task.done():
            await run_until(min(x[0] for x in timers) if timers else clock.now)
        waits.append([t for what, t in granted if what == "card"][-1] - arrive)
    for w in workers:
        w.cancel()
    assert max(waits) <= 1 / 5 + 1e-9  # without the pace: up to most of the window
    assert max(waits) > 0.15  # the backlog really was in the way
    stamps = [t for _, t in granted]
    for i, start in enumerate(stamps):  # cards count too: never 6 in a (guarded) second
        assert sum(1 for t in stamps[i:] if t < start + 1.02 - 1e-9) <= 5
    assert len(stamps) >= 0.95 * 5 * clock()  # the backlog still gets the allowance


async def test_burst_lets_the_whole_allowance_go_at_once() -> None:
    """``rate_burst = limit`` is the unpaced window (Zoho's day of credits)."""
    clock = FakeClock(0)
    limiter = window(100, 10, clock, burst=100)
    sent = []
    for _ in range(350):
        await limiter.acquire()
        limiter.answered()
        sent.append(clock())
    assert sent[:100] == [0] * 100  # the whole allowance at once
    assert sent[100] == 10 and sent[300] == 30
    for i, start in enumerate(sent):  # any window: at most 100
        assert sum(1 for t in sent[i:] if t < start + 10) <= 100


async def test_a_request_is_counted_from_when_it_was_written() -> None:
    """The CRM cannot count a request before its last byte left: a request held back after its
    grant (a slow connect, a busy loop) is counted from the write, not from the grant."""
    clock = FakeClock(0)
    limiter = window(1, 1.0, clock)
    await limiter.acquire()
    clock.advance(0.3)  # written 0.3 s after the grant
    limiter.sent()
    clock.advance(0.5)
    limiter.answered()  # the answer changes nothing once it was written
    await limiter.acquire()
    assert clock() == pytest.approx(1.3)  # counted from the grant it would be 1.0
    clock.advance(0.2)
    limiter.answered()  # failed before it was written: counted from the failure
    await limiter.acquire()
    assert clock() == pytest.approx(2.5)


async def test_a_granted_request_holds_its_place_until_it_is_written() -> None:
    """A connection set-up longer than the window must not let the slot expire before the
    request has even left (the previous limiter pruned it by its grant time)."""
    clock = FakeClock(0)
    limiter = window(1, 1.0, clock)
    await limiter.acquire()  # granted; still connecting
    waiting = asyncio.create_task(limiter.acquire())
    clock.advance(5.0)  # far beyond the window
    await asyncio.sleep(0.05)
    assert not waiting.done()
    limiter.sent()  # it leaves at 5.0
    await asyncio.wait_for(waiting, 1)
    assert clock() == pytest.approx(6.0)  # one window after it left


async def test_a_forgotten_answer_stops_holding_a_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.adapter.ratelimit.MAX_FLIGHT", 0.2)
    limiter = SlidingWindow(1, 0.05, guard=0)
    await limiter.acquire()  # never answered: a caller that forgot
    await asyncio.wait_for(limiter.acquire(), 2)  # not for ever


async def test_a_request_held_back_while_writing_never_puts_the_crm_over(
    no_unmocked_http: respx.MockRouter,
) -> None:
    """A request whose bytes leave late (here its body is streamed with a 60 ms pause, as a
    descheduled process or a busy loop would hold it) reaches the CRM late. Counted from when
    its headers started to leave (the previous limiter), the request one window later, sent
    without a pause, reached the CRM less than a window after it; counted from its last byte,
    never."""
    limit, seconds = 4, 0.4
    stamps: list[float] = []
    over = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal over
        await request.read()  # a CRM counts a request once it has arrived
        now = time.monotonic()
        stamps.append(now)
        if sum(1 for t in stamps if t > now - seconds) > limit:
            over += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    limiter = SlidingWindow(limit, seconds)  # the default guard: 8 ms of this window
    client = CRMClient(base_url=str(server.make_url("/")), limiter=limiter)

    async def body(pause: float) -> AsyncIterator[bytes]:
        yield b'{"call":'
        await asyncio.sleep(pause)
        yield b'"x"}'

    async def send(pause: float) -> None:
        await client.request("POST", "/hook", content=body(pause))

    no_unmocked_http.stop()  # respx reads a streamed body whole before sending it
    try:
        for i in range(16):  # a window of held-back requests, then one of prompt ones
            await send(0.06 if i % 8 < limit else 0.0)
    finally:
        no_unmocked_http.start()
        await client.aclose()
        await server.close()
    assert len(stamps) == 16
    assert over == 0


async def test_the_guard_widens_the_window() -> None:
    clock = FakeClock(0)

    async def sleep(delay: float) -> None:
        clock.advance(delay)

    limiter = SlidingWindow(2, 1.0, burst=2, guard=0.02, clock=clock, sleep=sleep)
    for _ in range(3):
        await limiter.acquire()
        limiter.answered()
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
    assert isinstance(burst, SlidingWindow) and burst.limit == 100 and burst.burst == 1
    assert make_limiter(10, 30, window=10).burst == 30
    assert make_limiter(10, 500, window=10).burst == 100  # never more than the window holds
    assert AdapterSettings(rate_limit=10, rate_window=10).rate_window == 10
    with pytest.raises(ValueError):
        AdapterSettings(rate_window=-1)


async def test_the_client_reports_when_a_request_is_written_and_over() -> None:
    """A slot never reported would be held for MAX_FLIGHT: every path ends with answered(),
    and every request whose bytes left reports sent() first."""

    class Recording(Unlimited):
        acquired = written = over = 0

        async def acquire(self) -> None:
            self.acquired += 1

        def sent(self) -> None:
            self.written += 1

        def answered(self) -> None:
            self.over += 1

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=429)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", ok)
    app.router.add_post("/refused", refused)
    app.router.add_post("/slow", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    limiter = Recording()
    client = CRMClient(base_url=str(server.make_url("/")), limiter=limiter, timeout=0.3)
    dead = CRMClient(base_url="http://127.0.0.1:9", limiter=limiter)  # connection refused
    try:
        assert (await client.request("POST", "/hook", json={})).status_code == 200
        assert (await client.request("POST", "/refused", json={})).status_code == 429
        with pytest.raises(RetryLater):
            await client.request("POST", "/slow", json={})  # timed out
        with pytest.raises(RetryLater):
            await dead.request("POST", "/hook", json={})  # network error
        task = asyncio.create_task(client.request("POST", "/slow", json={}))
        await asyncio.sleep(0.1)
        task.cancel()  # a job cancelled mid-request (shutdown)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.acquired == limiter.over == 5
        assert limiter.written == 4  # all but the refused connection were written out
    finally:
        await client.aclose()
        await dead.aclose()
        await server.close()
