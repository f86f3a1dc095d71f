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
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Protocol

# Requests leave on our clock but are counted on the CRM's, after a network delay that
# varies: a window is treated as this much longer so jitter never puts one over the limit.
WINDOW_GUARD = 0.02
# A request that never reports its answer (a caller that forgot) stops holding its place in
# a window after this long; CRMClient always reports, and its timeout is far shorter.
MAX_FLIGHT = 300.0


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

    def sent(self) -> None:
        """The request just granted (in this task) is written out: its bytes are on the wire."""

    def answered(self) -> None:
        """The request just granted (in this task) is over: answered, failed or cancelled."""

    def spent(self) -> None:
        """Act as if the whole allowance had been used just now (see :func:`spend_all`)."""


class Unlimited:
    async def acquire(self) -> None:
        return

    def sent(self) -> None:
        return

    def answered(self) -> None:
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

    def sent(self) -> None:
        return  # even spacing has no window to keep: nothing to re-stamp

    def answered(self) -> None:
        return

    def spent(self) -> None:
        self._tokens, self._stamp = 0.0, self._clock()


class _Slot:
    """One request's place in a window: held from its grant until its bytes are all written,
    then counted from that moment."""

    __slots__ = ("flying", "stamp")

    def __init__(self, stamp: float, flying: bool = True) -> None:
        self.stamp = stamp  # grant time, then the time it was written (or failed)
        self.flying = flying  # granted, not yet written: counted as "now"


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

    **Which moment a request is counted at.** The CRM counts a request when it arrives, which is
    after the moment its last byte was written to our socket plus the network's delay. So a
    request holds its place in the window from its grant (counted as "now") until its bytes are
    all written, :meth:`sent`, called by ``CRMClient`` from httpcore's trace, and is counted
    from that moment. Counting from the grant or from when its headers started to leave (the
    previous design) was too early whenever the request was held back in between: a connection
    set-up longer than the window even let its slot expire before it left, and a busy loop, a GC
    pause or a descheduled process between the stamp and the write put two requests less than a
    window apart on the wire. The guard covers the network: two requests' delays may differ by
    up to ``guard × window`` (20 ms of a second) and the CRM still never sees more than
    ``limit``. (Counting from the answer instead would hold against a CRM that counts
    arbitrarily late, but costs one round trip per window: with a CRM answering in 100 ms, 7 per
    second delivered 0.887× the limit in bench.replicas, against 0.976-0.995× counting from the
    write.) A request that fails before its bytes are all written is counted from
    :meth:`answered`, which ``CRMClient`` calls whatever the outcome; a slot that hears neither
    (a caller that forgot) stops being held after :data:`MAX_FLIGHT` seconds, so a lost call
    cannot shrink the window for good.
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
        self._sent: list[_Slot] = []  # every request still counted in the window
        self._slot: ContextVar[_Slot | None] = ContextVar(f"slot{id(self)}", default=None)
        self._landed = asyncio.Event()  # set when a flying slot lands (sent or answered)
        self._clock = clock
        self._sleep = sleep
        self._turns = _Turns()

    def _wait(self, now: float, first: bool) -> float | None:
        """How long until the next request may go (<= 0: now; None: until an answer)."""
        for slot in self._sent:  # a lost answered() must not hold a place for ever
            if slot.flying and slot.stamp < now - MAX_FLIGHT:
                slot.flying = False
        self._sent = [s for s in self._sent if s.flying or s.stamp > now - self.span]
        wait: float | None = -1.0 if first else self._due - (self.burst - 1) * self.interval - now
        if len(self._sent) >= self.limit:
            landed = [s.stamp for s in self._sent if not s.flying]
            if len(self._sent) - len(landed) >= self.limit:
                return None  # every place is held by a request still in flight
            # len(_sent) == limit (a grant needs a free place): the oldest landed one frees it
            wait = max(wait, min(landed) + self.span - now)
        return wait

    async def acquire(self) -> None:
        async with self._turns.turn() as first:  # FIFO, first-turn requests ahead
            while True:
                if await self._turns.step_back(first):
                    continue
                now = self._clock()
                wait = self._wait(now, first)
                if wait is None:
                    self._landed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._landed.wait(), MAX_FLIGHT)
                    continue
                if wait <= 0:
                    break
                await self._sleep(wait)
            # A card takes its place in the pace too: the backlog behind it moves one slot.
            self._due = max(self._due, now) + self.interval
            slot = _Slot(now)
            self._sent.append(slot)
            self._slot.set(slot)

    def sent(self) -> None:
        """The request granted last in this task is written out: count it from now."""
        slot = self._slot.get()
        if slot is not None:
            slot.stamp = max(slot.stamp, self._clock())
            slot.flying = False
            self._slot.set(None)
            self._landed.set()

    def answered(self) -> None:
        """The request granted last in this task is over (answered, failed or cancelled): if
        it was never reported :meth:`sent`, count it from now, the latest it can have left."""
        self.sent()

    def spent(self) -> None:
        now = self._clock()
        self._sent = [_Slot(now, flying=False) for _ in range(self.limit)]
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
