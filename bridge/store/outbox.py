"""The outbox: one row per (event, adapter, action), retried until done or dead.

:class:`Outbox` is the workers' and the CLI's view of the jobs in a :class:`Storage`: it adds
the clock to each call. A claimed job carries a lease (this process, an expiry) that the
worker renews while the CRM call runs; a job whose lease expired (its worker died) is taken
again, one under a live lease never is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.store.ports import Storage

PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"
# A job booked more than this far in our future was booked by a clock that was ahead (a bad
# NTP step, set right since): it is due now rather than after the jump. The backoff never
# books further ahead than a day (Backoff.MAX_RETRY_AFTER), and a booking moment after "now"
# is the other mark of such a clock.
CLOCK_SLACK = 300.0
MAX_DUE_AHEAD = 86_400.0 + CLOCK_SLACK
STATUSES = (PENDING, RUNNING, DONE, DEAD)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    event_id: int
    adapter: str
    action: str
    status: str
    attempts: int
    due_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    result: str | None
    domain: str
    uuid: str
    event: str
    payload: dict[str, Any]
    recovered: bool

    @classmethod
    def from_row(cls, row: Any) -> Job:
        values = list(row)
        values[14] = json.loads(values[14])
        values[15] = bool(values[15])
        return cls(*values)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Outbox:
    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self._clock = clock

    async def requeue_expired(self, adapter: str | None = None) -> int:
        """Jobs whose worker died (lease expired) are pending again."""
        return await self.storage.requeue_expired(self._clock(), adapter)

    async def claim(self, adapter: str, limit: int, *, live: int | None = None) -> list[Job]:
        """Mark due jobs running under this process's lease and return them, in one
        transaction (a job is never left 'running' without its worker having it): live
        jobs first (up to ``live`` more than ``limit`` when given), each call's jobs one at
        a time and in order (see :meth:`Storage.claim`)."""
        return await self.storage.claim(adapter, limit, self._clock(), live=live)

    async def renew(self, job_ids: list[int]) -> int:
        return await self.storage.renew(job_ids, self._clock())

    async def next_due(self, adapter: str, *, lane: str | None = None) -> float | None:
        return await self.storage.next_due(adapter, self._clock(), lane=lane)

    async def mark_done(self, job_id: int, result: str | None) -> bool:
        return await self.storage.book(job_id, DONE, self._clock(), result=result)

    async def mark_retry(self, job_id: int, due_at: float, error: str) -> bool:
        return await self.storage.book(job_id, PENDING, self._clock(), error=error, due_at=due_at)

    async def mark_dead(self, job_id: int, error: str) -> bool:
        return await self.storage.book(job_id, DEAD, self._clock(), error=error)

    async def release(self, job_id: int) -> None:
        """Put a job interrupted by shutdown back, without counting the attempt."""
        await self.storage.release(job_id, self._clock())

    # --- operations (CLI, status, console) ------------------------------------------------

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self.storage.job_counts()

    async def list(
        self, *, status: str | None = None, adapter: str | None = None, limit: int = 50
    ) -> list[Job]:
        return await self.storage.list_jobs(status=status, adapter=adapter, limit=limit)

    async def get(self, job_id: int) -> Job | None:
        return await self.storage.get_job(job_id)

    async def retry_dead(self, job_ids: list[int] | None = None) -> int:
        """Send dead jobs (all, or the given ids) back to pending, due now, with a fresh age
        (a job that died of old age gets its full retry period again)."""
        n = await self.storage.retry_dead(job_ids, self._clock())
        if n:
            await self.storage.notify(set((await self.counts()).keys()))
        return n
