"""Event ingest with group commit.

Each webhook hands its event to :class:`EventWriter` and waits. One flusher writes every
event that queued up while the previous commit was being fsync'd in a single transaction
(events + the jobs they cause), then answers all of them. The 200 therefore only ever
follows a durable commit, yet a burst costs one fsync per batch rather than per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.store.ports import StorageError

if TYPE_CHECKING:
    from bridge.store.ports import Storage

MAX_BATCH = 400  # events per transaction (one multi-row INSERT on SQLite)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    domain: str
    uuid: str
    event: str
    payload: dict[str, Any]
    recovered: bool = False

    @property
    def stored_event(self) -> str:
        """The ``events.event`` value. A ring group sends one ``call_user_start`` per ringing
        extension under one uuid, so that event is stored (and deduplicated) per extension:
        ``call_user_start:102``; a repeat for the same extension is still a duplicate."""
        if self.event == "call_user_start":
            callee = str(self.payload.get("callee") or "").strip()
            if callee:
                return f"call_user_start:{callee}"
        return self.event

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.domain, self.uuid, self.stored_event)


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: int | None  # None for a duplicate
    duplicate: bool
    jobs: int


JobPlanner = Callable[[str], list[tuple[str, str]]]
"""Given an event type, the (adapter, action) jobs it causes."""


class EventWriter:
    def __init__(
        self,
        storage: Storage,
        plan_jobs: JobPlanner,
        on_jobs: Callable[[set[str]], None] = lambda adapters: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._plan_jobs = plan_jobs
        self._on_jobs = on_jobs
        self._clock = clock
        self._pending: list[tuple[IncomingEvent, asyncio.Future[Stored]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: why the last event commit failed; None once one succeeded (read by /readyz)
        self.last_error: str | None = None

    async def submit(self, event: IncomingEvent) -> Stored:
        """Store ``event`` and its jobs durably; raises StorageError if that failed."""
        fut: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        return await asyncio.shield(fut)

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._commit(batch)
            except StorageError:
                continue  # the storage failed: every waiter has its 503
            except Exception:
                # Not the storage: one event it cannot take (say, an unencodable value) must
                # not cost the others that shared its batch their 200: each on its own.
                for one in batch if len(batch) > 1 else ():
                    with contextlib.suppress(Exception):
                        await self._commit([one])

    async def _commit(self, batch: list[tuple[IncomingEvent, asyncio.Future[Stored]]]) -> None:
        """Write ``batch`` and answer its waiters; a StorageError is handed to every waiter
        (never a 200), any other error is raised for the caller to split the batch."""
        try:
            results, adapters = await self._write(batch)
        except StorageError as exc:
            self._answer_failed(batch, exc)
            raise
        except Exception as exc:
            if len(batch) == 1:
                self._answer_failed(batch, StorageError(repr(exc)))
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
        self.last_error = None
        if adapters:
            self._on_jobs(adapters)

    def _answer_failed(
        self, batch: list[tuple[IncomingEvent, asyncio.Future[Stored]]], err: StorageError
    ) -> None:
        self.last_error = str(err)  # /readyz reflects the last commit (see app.readyz)
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(err)

    async def _write(
        self, batch: list[tuple[IncomingEvent, asyncio.Future[Stored]]]
    ) -> tuple[list[Stored], set[str]]:
        events = [ev for ev, _ in batch]
        planned = {ev.event: self._plan_jobs(ev.event) for ev in events}
        return await self._storage.append(events, planned, self._clock())
