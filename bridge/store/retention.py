"""Retention: what was delivered long ago is deleted on a schedule, so the file stops growing.

Every ``every`` seconds, rows older than ``storage.retention_days`` go: ``done`` jobs, then
events with no job left (pending and dead jobs keep theirs, and ``outbox retry`` keeps
working; events that never caused a job, such as call_start, go too), then the per-call
CRM ids of calls whose events are all gone. An event's row is what
turns a repeated webhook into a duplicate, so a webhook replayed after the retention period
is taken as new. The cutoff never passes the newest event's arrival minus the retention
period: a start with the clock far ahead must not take the fresh rows that deduplicate
webhooks (nor the rows of a long quiet spell). Deletes run in chunks, each its own short
transaction, so a large backlog of old rows never holds the write lock long enough to delay
a webhook's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from bridge.store.ports import Storage, StorageError

log = structlog.get_logger("bridge.store")

CHUNK = 100  # rows per delete transaction: deleting 500 old events took 67-170 ms
EVERY = 3600.0
LEAD = "retention"


async def prune(storage: Storage, cutoff: float, chunk: int = CHUNK) -> dict[str, int]:
    """Delete what is older than ``cutoff`` (UNIX time); rows deleted per table."""
    return await storage.prune(cutoff, chunk)


class Pruner:
    """Runs :func:`prune` at start and then every ``every`` seconds, in the background."""

    def __init__(
        self,
        storage: Storage,
        retention_days: float,
        clock: Callable[[], float] = time.time,
        every: float = EVERY,
    ) -> None:
        self._storage = storage
        self._keep = retention_days * 86400
        self._clock = clock
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def cutoff(self) -> float:
        """What is older than this goes: retention before now, but never before the newest
        event seen (ids grow with arrival), whatever the clock says."""
        now = self._clock()
        newest_at = await self._storage.newest_event_at()
        newest = now if newest_at is None else min(now, newest_at)
        if now - newest > self._keep:
            log.info(
                "retention: the newest event is older than the retention period; rows are"
                " kept from it back (a clock far ahead, or a long quiet spell)",
                newest_age_days=round((now - newest) / 86400, 1),
            )
        return newest - self._keep

    async def once(self) -> dict[str, int]:
        return await prune(self._storage, await self.cutoff())

    async def _run(self) -> None:
        while True:
            try:
                # One replica prunes at a time (the others find the lead taken and wait).
                if not await self._storage.try_lead(LEAD):
                    await asyncio.sleep(self._every)
                    continue
                deleted = await self.once()
            except StorageError as exc:
                log.error("retention: could not prune old rows", error=str(exc))
            else:
                if any(deleted.values()):
                    log.info("retention: pruned old rows", **deleted)
            await asyncio.sleep(self._every)
