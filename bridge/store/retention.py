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
import sqlite3
import time
from collections.abc import Callable
from functools import partial

import structlog

from bridge.store.db import Database, StorageError, in_transaction
from bridge.store.state import call_key

log = structlog.get_logger("bridge.store")

CHUNK = 100  # rows per delete transaction: deleting 500 old events took 67-170 ms
EVERY = 3600.0


async def prune(db: Database, cutoff: float, chunk: int = CHUNK) -> dict[str, int]:
    """Delete what is older than ``cutoff`` (UNIX time); rows deleted per table."""
    deleted = {"jobs": 0, "events": 0, "crm_objects": 0}
    while True:
        n = await db.run(in_transaction(partial(_done_jobs, cutoff=cutoff, chunk=chunk)))
        deleted["jobs"] += n
        if n < chunk:
            break
        await asyncio.sleep(0)  # let waiting webhooks take the lock between chunks
    after: int | None = 0
    while after is not None:
        events, objects, after = await db.run(
            in_transaction(partial(_events, after=after, cutoff=cutoff, chunk=chunk))
        )
        deleted["events"] += events
        deleted["crm_objects"] += objects
        await asyncio.sleep(0)
    return deleted


def _done_jobs(conn: sqlite3.Connection, *, cutoff: float, chunk: int) -> int:
    return conn.execute(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status = 'done'"
        " AND updated_at < ? LIMIT ?)",
        (cutoff, chunk),
    ).rowcount


def _events(
    conn: sqlite3.Connection, *, after: int, cutoff: float, chunk: int
) -> tuple[int, int, int | None]:
    """Old events without jobs among the next ``chunk`` ids, and their calls' CRM ids.

    Walks the table by id (ids grow with arrival time) so each transaction looks at a
    bounded number of rows, however many pending jobs keep older events alive.
    """
    first = conn.execute(
        "SELECT id, received_at FROM events WHERE id > ? ORDER BY id LIMIT 1", (after,)
    ).fetchone()
    if first is None or first[1] >= cutoff:
        return 0, 0, None
    gone = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.id >= ?"
        " AND e.id < ? AND e.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id))"
        " RETURNING domain, uuid",
        (first[0], first[0] + chunk, cutoff),
    ).fetchall()
    objects = 0
    for domain, uuid in set(map(tuple, gone)):
        objects += conn.execute(
            "DELETE FROM crm_objects WHERE call_key = ?"
            " AND NOT EXISTS (SELECT 1 FROM events WHERE domain = ? AND uuid = ?)",
            (call_key(domain, uuid), domain, uuid),
        ).rowcount
    return len(gone), objects, first[0] + chunk - 1


class Pruner:
    """Runs :func:`prune` at start and then every ``every`` seconds, in the background."""

    def __init__(
        self,
        db: Database,
        retention_days: float,
        clock: Callable[[], float] = time.time,
        every: float = EVERY,
    ) -> None:
        self._db = db
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
        row = await self._db.fetchone("SELECT received_at FROM events ORDER BY id DESC LIMIT 1")
        newest = now if row is None else min(now, row[0])
        if now - newest > self._keep:
            log.info(
                "retention: the newest event is older than the retention period; rows are"
                " kept from it back (a clock far ahead, or a long quiet spell)",
                newest_age_days=round((now - newest) / 86400, 1),
            )
        return newest - self._keep

    async def once(self) -> dict[str, int]:
        return await prune(self._db, await self.cutoff())

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.once()
            except (StorageError, sqlite3.Error) as exc:
                log.error("retention: could not prune old rows", error=str(exc))
            else:
                if any(deleted.values()):
                    log.info("retention: pruned old rows", **deleted)
            await asyncio.sleep(self._every)
