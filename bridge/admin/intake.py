"""What the webhook endpoint took and refused, counted per hour for the console.

The ack path only bumps a counter in memory (and, for a refusal, appends one short row);
a background task writes them every ``FLUSH_SECONDS`` in one transaction. A flood of bad
requests therefore costs one small commit per interval, never one per request, and what is
kept of refusals is capped (``REJECTED_CAP`` rows in the table, ``MAX_BUFFERED`` in memory).
The refused request's token and body are never kept: only time, sender, status and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.admin import queries
from bridge.background import background
from bridge.keys import CLOCK, DB, INTAKE
from bridge.redact import REDACTOR
from bridge.store import Storage, StorageError

log = structlog.get_logger("bridge.admin")

FLUSH_SECONDS = 2.0
INDEX_PAUSE = 0.05  # between indexing chunks while catching up
PRUNE_EVERY = 3600.0  # drop index entries of events retention deleted, this often
MAX_BUFFERED = 500  # refusals held between flushes; beyond that only the count grows
DETAIL_CHARS = 200

ACCEPTED, DUPLICATE = "accepted", "duplicate"


class Intake:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[int, str], int] = {}
        self._rejected: deque[tuple[Any, ...]] = deque(maxlen=MAX_BUFFERED)

    def note(self, outcome: str, *, sender: str = "", status: int = 0, detail: str = "") -> None:
        """Count one request; a refusal (anything but accepted/duplicate) is also listed."""
        now = self._clock()
        key = (int(now // 3600), outcome)
        self._counts[key] = self._counts.get(key, 0) + 1
        if outcome not in (ACCEPTED, DUPLICATE):
            text = REDACTOR(detail)[:DETAIL_CHARS]
            self._rejected.append((now, sender[:64], status, outcome, text))

    async def flush(self, db: Storage) -> None:
        counts, self._counts = self._counts, {}
        rejected = list(self._rejected)
        self._rejected.clear()
        if not counts and not rejected:
            return
        try:
            await queries.save_intake(db, counts, rejected)
        except StorageError:
            # Put them back: they are written with the next flush.
            for key, n in counts.items():
                self._counts[key] = self._counts.get(key, 0) + n
            self._rejected.extendleft(reversed(rejected))
            raise


async def intake_ctx(app: web.Application) -> AsyncIterator[None]:
    """Creates the console's tables and flushes the intake counters in the background."""
    db, intake = app[DB], app[INTAKE]
    if db.backend != "sqlite":
        # Not SQLite: the console's tables are not on the storage ports yet (#16 moves
        # bridge/admin/queries.py onto them); the counters stay in memory until then.
        log.warning("webhook intake counters are not saved on this storage backend yet")
        yield
        return
    await queries.ensure_schema(db)

    async def loop() -> None:
        behind, last_prune = False, 0.0
        while True:
            # While the search index is behind (a first start on a big file), catch up in
            # short transactions with small pauses, so webhooks keep getting the lock.
            await asyncio.sleep(INDEX_PAUSE if behind else FLUSH_SECONDS)
            try:
                await intake.flush(db)
                behind = await queries.index_calls(db) >= queries.INDEX_CHUNK
                if not behind and time.monotonic() - last_prune > PRUNE_EVERY:
                    last_prune = time.monotonic()
                    await queries.prune_index(db)
            except StorageError as exc:
                log.warning("could not save webhook intake counters", error=str(exc))

    async with background(loop(), "admin-intake"):
        yield
    with contextlib.suppress(StorageError):
        await intake.flush(db)
    await queries.close_reader(db)


def make_intake(app: web.Application) -> Intake:
    return Intake(app[CLOCK])
