"""Addresses that keep sending wrong tokens are told to wait (429) instead of being answered.

A sliding count per address: ``limit`` wrong tokens within ``window`` seconds blocks the
address for ``block`` seconds. While blocked, its wrong tokens get 429 (no log line per
guess, no 404 to learn from); the right token is always let through. onlinePBX sends every
customer's webhooks from the same few addresses, so a block that stopped the right token
would let anyone shut a bridge's intake by aiming their own onlinePBX at it. The token
itself (24 random bytes, or a configured one) is what keeps guessers out. Behind a proxy, set
``server.trusted_proxies`` so the address is the client's, not the proxy's.

Memory is bounded: at most ``MAX_TRACKED`` addresses are counted and as many blocked (the
oldest forgotten first), and IPv6 addresses count per /64 (one host's whole range).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address

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
        self._blocked_until: OrderedDict[str, float] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must still wait after a wrong token, or None."""
        address = _who(address)
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
        address = _who(address)
        now = self._clock()
        recent = [t for t in self._misses.pop(address, []) if now - t < self.window]
        recent.append(now)
        self._misses[address] = recent
        while len(self._misses) > MAX_TRACKED:
            self._misses.popitem(last=False)
        if len(recent) >= self.limit:
            self._blocked_until.pop(address, None)
            self._blocked_until[address] = now + self.block
            while len(self._blocked_until) > MAX_TRACKED:
                self._blocked_until.popitem(last=False)
            del self._misses[address]
            return True
        return False

    def __len__(self) -> int:
        """Addresses remembered (counted or blocked)."""
        return len(self._misses) + len(self._blocked_until)


def _who(address: str) -> str:
    """The unit that is counted: the address, or an IPv6 address's /64."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return ip.exploded[:19] + "::/64"
    return str(ip)
