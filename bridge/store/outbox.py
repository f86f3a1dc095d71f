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


def _rank(alias: str) -> str:
    """An event's place in a call: start, each ring, answer, then the end (or the miss)."""
    return (
        f"(CASE WHEN {alias}.event = 'call_start' THEN 0"
        f" WHEN {alias}.event LIKE 'call_user_start%' THEN 1"
        f" WHEN {alias}.event = 'call_answered' THEN 2 ELSE 3 END)"
    )


# No other job of the same call and adapter is running, or pending, due and earlier in the
# call (by event rank, then job id). A job that waits for its retry does not hold the others
# back (its call may have ended meanwhile, and then it is skipped when its turn comes).
_CALL_ORDER = (
    "NOT EXISTS (SELECT 1 FROM events e2 JOIN jobs j2 ON j2.event_id = e2.id"
    " WHERE e2.domain = e.domain AND e2.uuid = e.uuid AND j2.adapter = j.adapter"
    " AND j2.id <> j.id AND (j2.status = 'running' OR (j2.status = 'pending'"
    f" AND j2.due_at <= :now AND ({_rank('e2')} < {_rank('e')}"
    f" OR ({_rank('e2')} = {_rank('e')} AND j2.id < j.id)))))"
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


def _named(values: tuple[str, ...]) -> dict[str, str]:
    return {f"v{n}": v for n, v in enumerate(values)}


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

    async def claim(
        self,
        adapter: str,
        limit: int,
        *,
        live_limit: int = 0,
        lanes: tuple[tuple[str, ...], ...] = (),
    ) -> list[Job]:
        """Mark due jobs running and return them, in one transaction (a job is never left
        'running' without its worker having it).

        Up to ``live_limit`` jobs of the actions in ``lanes`` are taken first, lane by lane
        (the fast lane: a card never waits behind a backlog), then up to ``limit`` others.
        Jobs of one call run in event order, never two at once: a job is not taken while
        another job of the same call and adapter is running, or is pending, due and earlier
        (see ``_CALL_ORDER``).
        """
        now = self._clock()
        fast = _named(tuple(a for lane in lanes for a in lane))

        def take(conn: sqlite3.Connection, where: str, params: dict[str, Any], n: int) -> list[int]:
            if n <= 0:
                return []
            return [
                r[0]
                for r in conn.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                    " updated_at = :now WHERE id IN (SELECT j.id FROM jobs j"
                    " JOIN events e ON e.id = j.event_id WHERE j.status = 'pending'"
                    f" AND j.adapter = :adapter AND {_DUE} {where} AND {_CALL_ORDER}"
                    " ORDER BY j.due_at, j.id LIMIT :limit) RETURNING id",
                    {**_bounds(now), **params, "adapter": adapter, "limit": n},
                ).fetchall()
            ]

        def claim(conn: sqlite3.Connection) -> list[Job]:
            ids: list[int] = []
            for lane in lanes:
                named = {k: v for k, v in fast.items() if v in lane}
                where = f"AND j.action IN ({','.join(':' + k for k in named)})"
                ids += take(conn, where, named, live_limit - len(ids))
            rest = f"AND j.action NOT IN ({','.join(':' + k for k in fast)})" if fast else ""
            ids += take(conn, rest, fast, limit)
            if not ids:
                return []
            found = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
                f" WHERE j.id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
            order = {job_id: n for n, job_id in enumerate(ids)}
            return sorted((Job.from_row(r) for r in found), key=lambda job: order[job.id])

        return await self._db.run(in_transaction(claim))

    async def next_due(self, adapter: str, actions: tuple[str, ...] = ()) -> float | None:
        """When the adapter's next pending job (of ``actions``, when given) is due."""
        named = _named(actions)
        only = f" AND action IN ({','.join(':' + k for k in named)})" if actions else ""
        row = await self._db.fetchone(
            f"SELECT MIN(CASE WHEN {_DUE} THEN MIN(due_at, :now) ELSE due_at END) FROM jobs"
            f" WHERE status = 'pending' AND adapter = :adapter{only}",
            {**_bounds(self._clock()), **named, "adapter": adapter},
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
