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

from bridge.background import background
from bridge.keys import CLOCK, DB, INTAKE
from bridge.redact import REDACTOR
from bridge.store import Storage, StorageError
from bridge.store.reports import INDEX_CHUNK, INDEX_LEAD, close_reports, reports_for

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
            await reports_for(db).save_intake(counts, rejected)
        except StorageError:
            # Put them back: they are written with the next flush.
            for key, n in counts.items():
                self._counts[key] = self._counts.get(key, 0) + n
            self._rejected.extendleft(reversed(rejected))
            raise


async def intake_ctx(app: web.Application) -> AsyncIterator[None]:
    """Flushes the intake counters and fills the search index in the background."""
    db, intake = app[DB], app[INTAKE]
    reports = reports_for(db)

    async def loop() -> None:
        behind, last_prune = False, 0.0
        while True:
            # While the search index is behind (a first start on a big file), catch up in
            # short transactions with small pauses, so webhooks keep getting the lock.
            await asyncio.sleep(INDEX_PAUSE if behind else FLUSH_SECONDS)
            try:
                await intake.flush(db)  # every replica counts what it received
                if not await db.try_lead(INDEX_LEAD):  # one replica indexes
                    behind = False
                    continue
                behind = await reports.index_calls() >= INDEX_CHUNK
                if not behind and time.monotonic() - last_prune > PRUNE_EVERY:
                    last_prune = time.monotonic()
                    await reports.prune_index()
            except StorageError as exc:
                log.warning("could not save webhook intake counters", error=str(exc))

    async with background(loop(), "admin-intake"):
        yield
    with contextlib.suppress(StorageError):
        await intake.flush(db)
    await close_reports(db)


def make_intake(app: web.Application) -> Intake:
    return Intake(app[CLOCK])
