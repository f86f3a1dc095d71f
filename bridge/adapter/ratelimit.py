"""Limiters that keep one adapter's requests under its CRM's limit.

Two shapes of limit are common: "N requests a second" (amoCRM: 7/s) and "N requests per
window" (100 per 10 s), where a CRM lets a burst through and then refuses the rest of the
window. Both limiters pace requests evenly by default, so a live call card (``first_turn``)
waits at most one slot behind any backlog. :func:`make_limiter` picks the limiter from an
adapter's ``rate_limit``, ``rate_burst`` and ``rate_window`` settings, so every adapter gets
both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Protocol

# Requests leave on our clock but are counted on the CRM's, after a network delay that
# varies: a window is treated as this much longer so jitter never puts one over the limit.
WINDOW_GUARD = 0.02


_FIRST: ContextVar[bool] = ContextVar("rate_first_turn", default=False)


@contextmanager
def first_turn() -> Iterator[None]:
    """Requests made inside (in this task) go before any waiting request that is not: a live
    call card must not queue behind a post-call backlog. They still count against the limit."""
    token = _FIRST.set(True)
    try:
        yield
    finally:
        _FIRST.reset(token)


class _Turns:
    """Who waits for the next slot: FIFO within each class, first-turn requests before the
    others (a waiting ordinary request steps back whenever a first-turn one is waiting)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._first_lock = asyncio.Lock()
        self._first_waiting = 0
        self._no_first = asyncio.Event()
        self._no_first.set()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        first = _FIRST.get()
        if first:
            self._first_waiting += 1
            self._no_first.clear()
        try:
            async with self._first_lock if first else self._lock:
                yield first
        finally:
            if first:
                self._first_waiting -= 1
                if not self._first_waiting:
                    self._no_first.set()

    async def step_back(self, first: bool) -> bool:
        """For an ordinary request: wait while first-turn ones are waiting (True if it did)."""
        if first or not self._first_waiting:
            return False
        await self._no_first.wait()
        return True


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Return when one more request may be sent."""

    def sending(self) -> None:
        """The request just granted (in this task) is leaving now."""

    def spent(self) -> None:
        """Act as if the whole allowance had been used just now (see :func:`spend_all`)."""


class Unlimited:
    async def acquire(self) -> None:
        return

    def sending(self) -> None:
        return

    def spent(self) -> None:
        return


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``rate <= 0`` means unlimited.

    With ``burst=1`` requests are evenly spaced, so no window of any length ever sees more
    than ``rate × window + 1`` of them.
    """

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._turns = _Turns()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._turns.turn() as first:  # FIFO, first-turn requests ahead
            while True:
                if await self._turns.step_back(first):
                    continue
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)

    def sending(self) -> None:
        return  # even spacing has no window to keep: nothing to re-stamp

    def spent(self) -> None:
        self._tokens, self._stamp = 0.0, self._clock()


class SlidingWindow:
    """At most ``limit`` requests in any ``window`` seconds; a backlog paced evenly within it.

    The window is the CRM's rule and is never broken, for any request: this is its strictest
    reading (a CRM counting fixed windows is satisfied too). Within it, ordinary requests are
    paced one per ``interval`` (GCRA, a virtual schedule), ``burst`` of them at once after an
    idle spell. Why: a backlog that used the whole allowance at once filled the window right
    at its start, and a live call card (a first-turn request) then waited for the window to
    move, most of a window (779 ms of a 1 s window in bench/live.py). First-turn requests
    skip the pace and only wait for the window, and the pace is a hair slower than
    ``window / limit`` (by ``guard / (limit - 1)``, 0.5% at 5 per second) so that a window
    the backlog fills always has its oldest request leaving within ``window / limit``:
    behind any backlog a card waits at most one slot, ``1/rate_limit`` (cards closer together
    than that share the window's free slots: they still never break it). ``burst = limit``
    gives the unpaced window (a day's budget, as Zoho's credits, where the pace itself would
    be seconds apart).

    A request is stamped when its slot is granted and stamped again by :meth:`sending`,
    called as the request's bytes start to leave (``CRMClient`` does it from httpcore's
    trace): a busy event loop can hold a granted request back for tens of milliseconds,
    which would otherwise pack more requests into one of the CRM's windows than ours saw.
    The pace is kept on grant times; the window count, on the re-stamped ones, is what
    guarantees the limit.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        burst: float = 1.0,
        guard: float = WINDOW_GUARD,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a window limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.span = window * (1 + guard)
        # span - (limit - 1) * interval <= window / limit: the oldest of a window full of
        # paced requests leaves within one slot (limit 1: the slot is the window itself).
        self.interval = self.span / limit * (1 + guard / max(1, limit - 1))
        self.burst = int(min(max(1.0, burst), limit))
        self._due = clock() - self.burst * self.interval  # GCRA: a fresh limiter may burst
        self._sent: list[list[float]] = []  # one mutable stamp per request in the window
        self._slot: ContextVar[list[float] | None] = ContextVar(f"slot{id(self)}", default=None)
        self._clock = clock
        self._sleep = sleep
        self._turns = _Turns()

    def _wait(self, now: float, first: bool) -> float:
        """How long until the next request may go (<= 0: now)."""
        self._sent = [s for s in self._sent if s[0] > now - self.span]
        wait = -1.0 if first else self._due - (self.burst - 1) * self.interval - now
        if len(self._sent) >= self.limit:
            wait = max(wait, min(s[0] for s in self._sent) + self.span - now)
        return wait

    async def acquire(self) -> None:
        async with self._turns.turn() as first:  # FIFO, first-turn requests ahead
            while True:
                if await self._turns.step_back(first):
                    continue
                now = self._clock()
                wait = self._wait(now, first)
                if wait <= 0:
                    break
                await self._sleep(wait)
            # A card takes its place in the pace too: the backlog behind it moves one slot.
            self._due = max(self._due, now) + self.interval
            slot = [now]
            self._sent.append(slot)
            self._slot.set(slot)

    def sending(self) -> None:
        """The request granted last in this task is leaving now: move its stamp here."""
        slot = self._slot.get()
        if slot is not None:
            slot[0] = max(slot[0], self._clock())
            self._slot.set(None)

    def spent(self) -> None:
        now = self._clock()
        self._sent = [[now] for _ in range(self.limit)]
        # Once that window has passed, the pace starts afresh: no burst beyond `burst`.
        self._due = max(self._due, now + self.span - self.burst * self.interval)


def spend_all(limiters: Iterable[Limiter]) -> None:
    """A process that takes a CRM over from another one (a replica taking an adapter's lead
    from one that just died, a bridge restarted a moment after a kill) cannot know what the
    other one sent in the CRM's current window: it may have used the whole allowance a moment
    ago. Starting with an empty window would let a burst through on top of that (in the
    replica harness, 6 of 7 requests over a 20/s limit came within 2 s of a lead's kill). So
    the new holder starts as if it had just used the allowance itself: its first request waits
    one window (``rate_window``, or one request's interval for an evenly spaced limit)."""
    for limiter in limiters:
        limiter.spent()


def make_limiter(rate: float, burst: float = 1.0, window: float = 0.0) -> Limiter:
    """The limiter for an adapter's settings.

    ``rate`` requests a second (``<= 0``: unlimited). Without ``window`` they are spaced by a
    token bucket holding ``burst``; with it, ``rate × window`` may go in any ``window``
    seconds (e.g. rate 10, window 10 for a CRM allowing 100 per 10 s), paced evenly within
    the window with ``burst`` at once after an idle spell.
    """
    if rate <= 0:
        return Unlimited()
    if window > 0:
        return SlidingWindow(max(1, int(rate * window + 1e-9)), window, burst=burst)
    return TokenBucket(rate, burst)
