"""A request rate shared by every process on one storage (the onlinePBX API's 5/s).

Each request reserves the next free slot in one ``rate_slots`` row (on PostgreSQL, on the
database's clock, so replicas' clock skew does not matter) and waits for it: three replicas
calling onlinePBX together send 5 requests a second in total, not 15. When the storage cannot
be reached the limiter falls back to this process's own bucket, so a database outage never
lifts the limit.
"""

from __future__ import annotations

import asyncio

from bridge.adapter.ratelimit import Limiter, TokenBucket
from bridge.store.ports import Storage, StorageError


class SharedRate:
    """Evenly spaced slots, ``1/rate`` apart, like the per-process limiters' default pace (the
    token bucket, the window limiter's pace). The slots are first come, first served in the
    database: ``first_turn`` has no effect here (the onlinePBX API carries no live cards)."""

    def __init__(self, storage: Storage, name: str, rate: float) -> None:
        self._storage = storage
        self._name = f"rate:{name}"
        self.rate = rate
        self._fallback: Limiter = TokenBucket(rate, 1.0)

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        try:
            wait = await self._storage.rate_slot(self._name, 1.0 / self.rate)
        except StorageError:
            await self._fallback.acquire()
            return
        if wait > 0:
            await asyncio.sleep(wait)

    def sent(self) -> None:
        return  # evenly spaced slots: nothing to re-stamp

    def answered(self) -> None:
        return

    def spent(self) -> None:
        return  # the slots live in the database: every process already sees them
