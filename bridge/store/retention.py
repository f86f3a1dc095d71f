"""Retention: what was delivered long ago is deleted on a schedule, so the file stops growing.

Every ``every`` seconds, rows older than ``storage.retention_days`` go: ``done`` jobs, then
events with no job left (pending and dead jobs keep theirs, and ``outbox retry`` keeps
working), then the per-call CRM ids of calls whose events are gone. An event's row is what
turns a repeated webhook into a duplicate, so a webhook replayed after the retention period
is taken as new. Deletes run in chunks, each its own short transaction, so a large backlog
of old rows never holds the write lock long enough to delay a webhook's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable

import structlog

from bridge.store.db import Database, StorageError, in_transaction

log = structlog.get_logger("bridge.store")

CHUNK = 2000  # rows per delete transaction
EVERY = 3600.0

_STEPS = (
    (
        "jobs",
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status = 'done'"
        " AND updated_at < ? LIMIT ?)",
    ),
    (
        "events",
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id) LIMIT ?)",
    ),
    (
        "crm_objects",
        "DELETE FROM crm_objects WHERE rowid IN (SELECT c.rowid FROM crm_objects c"
        " WHERE c.created_at < ? AND NOT EXISTS (SELECT 1 FROM events e"
        " WHERE e.domain = substr(c.call_key, 1, instr(c.call_key, '/') - 1)"
        " AND e.uuid = substr(c.call_key, instr(c.call_key, '/') + 1)) LIMIT ?)",
    ),
)


async def prune(db: Database, cutoff: float, chunk: int = CHUNK) -> dict[str, int]:
    """Delete what is older than ``cutoff`` (UNIX time); rows deleted per table."""
    deleted: dict[str, int] = {}
    for table, sql in _STEPS:
        deleted[table] = 0
        while True:
            n = await db.run(in_transaction(lambda c, sql=sql: _delete(c, sql, cutoff, chunk)))
            deleted[table] += n
            if n < chunk:
                break
            await asyncio.sleep(0)  # let waiting webhooks take the lock between chunks
    return deleted


def _delete(conn: sqlite3.Connection, sql: str, cutoff: float, chunk: int) -> int:
    return conn.execute(sql, (cutoff, chunk)).rowcount


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

    async def _run(self) -> None:
        while True:
            try:
                deleted = await prune(self._db, self._clock() - self._keep)
            except StorageError as exc:
                log.error("retention: could not prune old rows", error=str(exc))
            else:
                if any(deleted.values()):
                    log.info("retention: pruned old rows", **deleted)
            await asyncio.sleep(self._every)
