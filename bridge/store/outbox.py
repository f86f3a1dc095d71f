"""The outbox: one row per (event, adapter, action), retried until done or dead."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.store.db import Database, in_transaction

PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"
# A job booked more than this far in our future was booked by a clock that was ahead (a bad
# NTP step, set right since): it is due now rather than after the jump. The backoff never
# books further ahead than a day (Backoff.MAX_RETRY_AFTER), and a booking moment after "now"
# is the other mark of such a clock.
CLOCK_SLACK = 300.0
MAX_DUE_AHEAD = 86_400.0 + CLOCK_SLACK
# pending and due: on time, or booked by a clock ahead of ours (either sign of it)
_DUE = "(due_at <= :now OR due_at > :now + :ahead OR updated_at > :now + :slack)"
STATUSES = (PENDING, RUNNING, DONE, DEAD)

_JOB_COLUMNS = (
    "j.id, j.event_id, j.adapter, j.action, j.status, j.attempts, j.due_at, j.created_at,"
    " j.updated_at, j.last_error, j.result, e.domain, e.uuid, e.event, e.payload, e.recovered"
)


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


def _bounds(now: float) -> dict[str, float]:
    return {"now": now, "ahead": MAX_DUE_AHEAD, "slack": CLOCK_SLACK}


class Outbox:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def requeue_running(self) -> int:
        """Jobs left ``running`` by a process that died are taken again."""
        rows = await self._db.write(
            "UPDATE jobs SET status = 'pending', updated_at = ? WHERE status = 'running'"
            " RETURNING id",
            (self._clock(),),
        )
        return len(rows)

    async def claim(self, adapter: str, limit: int) -> list[Job]:
        """Mark up to ``limit`` due jobs running and return them, in one transaction (a job
        is never left 'running' without its worker having it)."""
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> list[Job]:
            ids = [
                r[0]
                for r in conn.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                    " updated_at = :now WHERE id IN (SELECT id FROM jobs WHERE"
                    f" status = 'pending' AND adapter = :adapter AND {_DUE}"
                    " ORDER BY due_at, id LIMIT :limit) RETURNING id",
                    {**_bounds(now), "adapter": adapter, "limit": limit},
                ).fetchall()
            ]
            if not ids:
                return []
            found = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
                f" WHERE j.id IN ({','.join('?' * len(ids))}) ORDER BY j.due_at, j.id",
                ids,
            ).fetchall()
            return [Job.from_row(r) for r in found]

        return await self._db.run(in_transaction(claim))

    async def next_due(self, adapter: str) -> float | None:
        row = await self._db.fetchone(
            f"SELECT MIN(CASE WHEN {_DUE} THEN MIN(due_at, :now) ELSE due_at END) FROM jobs"
            " WHERE status = 'pending' AND adapter = :adapter",
            {**_bounds(self._clock()), "adapter": adapter},
        )
        return None if row is None else row[0]

    async def _finish(self, job_id: int, status: str, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        await self._db.write(
            f"UPDATE jobs SET status = ?, updated_at = ?{', ' if sets else ''}{sets} WHERE id = ?",
            (status, self._clock(), *cols.values(), job_id),
        )

    async def mark_done(self, job_id: int, result: str | None) -> None:
        await self._finish(job_id, DONE, result=result, last_error=None)

    async def mark_retry(self, job_id: int, due_at: float, error: str) -> None:
        await self._finish(job_id, PENDING, due_at=due_at, last_error=error)

    async def mark_dead(self, job_id: int, error: str) -> None:
        await self._finish(job_id, DEAD, last_error=error)

    async def release(self, job_id: int) -> None:
        """Put a job interrupted by shutdown back, without counting the attempt."""
        await self._db.write(
            "UPDATE jobs SET status = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?"
            " WHERE id = ? AND status = 'running'",
            (self._clock(), job_id),
        )

    # --- operations (CLI, status) -------------------------------------------------------

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self._db.fetchall(
            "SELECT adapter, status, COUNT(*) FROM jobs GROUP BY adapter, status"
        )
        out: dict[str, dict[str, int]] = {}
        for adapter, status, n in rows:
            out.setdefault(adapter, dict.fromkeys(STATUSES, 0))[status] = n
        return out

    async def list(
        self, *, status: str | None = None, adapter: str | None = None, limit: int = 50
    ) -> list[Job]:
        where, params = [], []
        if status:
            where.append("j.status = ?")
            params.append(status)
        if adapter:
            where.append("j.adapter = ?")
            params.append(adapter)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.fetchall(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id {clause}"
            " ORDER BY j.id DESC LIMIT ?",
            (*params, limit),
        )
        return [Job.from_row(r) for r in rows]

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetchone(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id WHERE j.id = ?",
            (job_id,),
        )
        return None if row is None else Job.from_row(row)

    async def retry_dead(self, job_ids: list[int] | None = None) -> int:
        """Send dead jobs (all, or the given ids) back to pending, due now, with a new retry
        window: the age that decides giving up (``created_at``) starts again, or a job that
        died of old age would get one attempt."""
        now = self._clock()
        sql = (
            "UPDATE jobs SET status = 'pending', due_at = ?, attempts = 0, updated_at = ?,"
            " created_at = ? WHERE status = 'dead'"
        )
        params: list[Any] = [now, now, now]
        if job_ids is not None:
            sql += f" AND id IN ({','.join('?' * len(job_ids))})"
            params += job_ids
        return len(await self._db.write(sql + " RETURNING id", params))
