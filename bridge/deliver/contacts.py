"""A short-lived cache of CRM contact lookups, one per adapter.

A call centre's callers repeat: the same client calls back, a missed call is followed by a
talk. Each lookup is a CRM request out of a small rate limit, so a contact found (or known
to be absent) is kept for ``ttl`` seconds. When the adapter creates a contact the entry is
replaced by it at once, so the next call from that number never creates a second one. A
lookup in flight for a number is shared: jobs for the same number wait for it (and for the
creation that may follow) instead of asking the CRM again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from bridge.adapter.contract import Contact
from bridge.adapter.locks import KeyLocks
from bridge.phones import Phone

MAX_ENTRIES = 10_000  # a bound on memory; far more numbers than a TTL's worth of calls


class ContactCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, Contact | None]] = {}
        self._locks = KeyLocks()

    @asynccontextmanager
    async def number(self, phone: Phone) -> AsyncIterator[None]:
        """Hold ``phone``: one find-or-create at a time per number."""
        async with self._locks.hold(phone.e164):
            yield

    async def find(
        self, phone: Phone, lookup: Callable[[Phone], Awaitable[Contact | None]]
    ) -> Contact | None:
        """The cached answer for ``phone``, else ``lookup(phone)`` (then cached)."""
        if self.ttl <= 0:
            return await lookup(phone)
        entry = self._entries.get(phone.e164)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        contact = await lookup(phone)
        self._put(phone, contact)
        return contact

    def peek(self, phone: Phone) -> Contact | None:
        """The cached contact for ``phone`` if one is fresh; never asks the CRM."""
        entry = self._entries.get(phone.e164)
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    def created(self, phone: Phone, contact: Contact) -> None:
        """The adapter created ``contact`` for ``phone``: any cached answer is stale."""
        self._entries.pop(phone.e164, None)
        if self.ttl > 0:
            self._put(phone, contact)

    def _put(self, phone: Phone, contact: Contact | None) -> None:
        now = self._clock()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) >= MAX_ENTRIES:  # still full: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries.pop(phone.e164, None)  # re-inserted last: the dict stays oldest-first
        self._entries[phone.e164] = (now + self.ttl, contact)
