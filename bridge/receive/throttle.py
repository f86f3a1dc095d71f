"""Addresses that keep sending wrong tokens are told to wait (429) instead of being answered.

A sliding count per address: ``limit`` wrong tokens within ``window`` seconds blocks the
address for ``block`` seconds. While blocked, its requests are refused before the token is
even compared, so guessing gains nothing. Only wrong tokens count: an address that sends the
right one is never blocked by its own traffic. Behind a proxy, set ``server.trusted_proxies``
so the address is the client's, not the proxy's.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_TRACKED = 10_000  # addresses remembered at most (oldest forgotten first)


class BadTokenThrottle:
    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        block: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self._clock = clock
        self._misses: OrderedDict[str, list[float]] = OrderedDict()
        self._blocked_until: dict[str, float] = {}

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must still wait, or None if it may be heard."""
        until = self._blocked_until.get(address)
        if until is None:
            return None
        left = until - self._clock()
        if left > 0:
            return left
        del self._blocked_until[address]
        return None

    def miss(self, address: str) -> bool:
        """Count a wrong token; True if the address is now blocked."""
        now = self._clock()
        recent = [t for t in self._misses.pop(address, []) if now - t < self.window]
        recent.append(now)
        self._misses[address] = recent
        while len(self._misses) > MAX_TRACKED:
            self._misses.popitem(last=False)
        if len(recent) >= self.limit:
            self._blocked_until[address] = now + self.block
            del self._misses[address]
            return True
        return False
