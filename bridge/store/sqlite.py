"""The SQLite backend: the embedded default, one file, one ``serve`` at a time.

Hot writes (ingest, claim, book) run as one plain-sqlite3 function each on the writer thread
(:meth:`Database.run`: one hop per commit, see ``db.py``); reads use the aiosqlite
connection. Cross-process exclusion uses a sidecar file ``<db>.lock`` (0600): ``serve``
holds a whole-file ``flock`` on it (a second ``serve`` on the same file is refused: it would
share no lease, rate limit or lock with the first), and :meth:`lock` takes a POSIX byte-range
lock on it, so a CLI command refreshing an OAuth pair waits for the server's refresh. Within
one process there is one server, so every lead (:meth:`try_lead`) is simply taken.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bridge.adapter.locks import FileLocks
from bridge.store.db import Database, in_transaction
from bridge.store.events import IncomingEvent, Stored
from bridge.store.outbox import CLOCK_SLACK, MAX_DUE_AHEAD, RUNNING, Job
from bridge.store.ports import PlannedJobs, Storage, StorageBusy, StorageError
from bridge.store.state import call_key
from bridge.store.tables import (
    AHEAD,
    DUE,
    IN_TURN,
    JOB_COLUMNS,
    LANES,
    LIVE_COLUMNS,
    LOCAL,
    by_adapter,
    live_listed,
    live_upsert,
    live_values,
)

MAX_BATCH = 400  # rows per multi-row INSERT, well under SQLite's variable limit

# The jobs one claim takes in one lane: pending, due, in their call's turn, oldest due first.
_CLAIMABLE = (
    "SELECT j.id FROM jobs j JOIN events e ON e.id = j.event_id"
    " WHERE j.status = 'pending' AND j.adapter = :adapter AND {lane}"
    f" AND {DUE.format(now=':now')} AND {IN_TURN} ORDER BY j.due_at, j.id LIMIT :limit"
)


class SQLiteStorage(Storage):
    backend = "sqlite"

    def __init__(self, db: Database, **kw: Any) -> None:
        super().__init__(**kw)
        self.db = db
        self.migrated = db.migrated
        # Beside the file itself: a symlink to it (another path to the same database) must
        # find the same locks, or a second serve would start on it.
        real = db.path if str(db.path) == ":memory:" else Path(db.path).resolve()
        self._lock_path = Path(f"{real}.lock")
        self._lock_fd: int | None = None
        self._instance = False
        self._leads: set[str] = set()
        # flock files in <db>.locks/: exclusive across processes and across storages in one
        # process, released when a process dies, and waited for without blocking the loop.
        self._file_locks = FileLocks.beside(real)

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = 2000, **kw: Any
    ) -> SQLiteStorage:
        return cls(await Database.open(path, busy_timeout_ms=busy_timeout_ms), **kw)

    @property
    def where(self) -> str:
        return str(self.db.path)

    async def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock and every byte-range lock of this process
        self._leads.clear()
        await self.db.close()

    async def schema_version(self) -> int:
        value = await self.db.get_meta("schema_version")
        return int(value or 0)

    def _fd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    async def hold_instance(self) -> None:
        if self._instance:
            return
        fd = self._fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise StorageBusy(
                f"another pbx-bridge serve ({holder}) is already running on {self.where}:"
                " stop it first. One SQLite file serves one process; to run several"
                " replicas use PostgreSQL ([storage] url, see docs/SCALING.md)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.owner})".encode(), 0)
        self._instance = True

    async def ping_write(self, now: float) -> None:
        await self.db.ping_write(now)

    async def probe_event_write(self, now: float) -> None:
        await self.db.probe_event_write(now)

    async def newest_event_at(self) -> float | None:
        row = await self.db.fetchone("SELECT received_at FROM events ORDER BY id DESC LIMIT 1")
        return None if row is None else row[0]

    # --- events -------------------------------------------------------------------------

    async def append(
        self, events: Sequence[IncomingEvent], planned: PlannedJobs, now: float
    ) -> tuple[list[Stored], set[str]]:
        values = ",".join("(?, ?, ?, ?, ?, ?)" for _ in events)
        params: list[Any] = []
        for ev in events:
            params += [
                ev.domain,
                ev.uuid,
                ev.stored_event,
                json.dumps(ev.payload, ensure_ascii=False, separators=(",", ":")),
                now,
                int(ev.recovered),
            ]
        sql = (
            "INSERT INTO events (domain, uuid, event, payload, received_at, recovered) "
            f"VALUES {values} ON CONFLICT (domain, uuid, event) DO NOTHING "
            "RETURNING id, domain, uuid, event"
        )

        def write(conn: sqlite3.Connection) -> tuple[list[Stored], set[str]]:
            # Plain sqlite3 on the writer thread: the whole batch is one hop (see db.py).
            inserted = {(r[1], r[2], r[3]): r[0] for r in conn.execute(sql, params).fetchall()}
            jobs: list[tuple[Any, ...]] = []
            results: list[Stored] = []
            adapters: set[str] = set()
            for ev in events:
                event_id = inserted.pop(ev.key, None)  # pop: a repeat within the batch is a dup
                if event_id is None:
                    results.append(Stored(None, True, 0))
                    continue
                plan = planned.get(ev.event, [])
                for adapter, action in plan:
                    jobs.append((event_id, adapter, action, now, now, now))
                    adapters.add(adapter)
                results.append(Stored(event_id, False, len(plan)))
            if jobs:
                conn.executemany(
                    "INSERT INTO jobs (event_id, adapter, action, due_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    jobs,
                )
            return results, adapters

        return await self.db.run(in_transaction(write))

    async def final_uuids(
        self, uuids: Sequence[str], domain: str, events: Sequence[str]
    ) -> set[str]:
        found: set[str] = set()
        ids = sorted(set(uuids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = await self.db.fetchall(
                f"SELECT DISTINCT uuid FROM events WHERE uuid IN ({','.join('?' * len(chunk))})"
                f" AND event IN ({','.join('?' * len(events))}) AND domain IN (?, '')",
                [*chunk, *events, domain],
            )
            found.update(row[0] for row in rows)
        return found

    # --- jobs ---------------------------------------------------------------------------

    async def claim(
        self, adapter: str, limit: int, now: float, *, live: int | None = None
    ) -> list[Job]:
        until = now + self.lease_seconds
        params = {"now": now, "owner": self.owner, "until": until, "adapter": adapter}

        def take(conn: sqlite3.Connection, lane: str, n: int) -> list[int]:
            if n <= 0:
                return []
            return [
                r[0]
                for r in conn.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                    " updated_at = :now, lease_owner = :owner, lease_expires = :until"
                    f" WHERE id IN ({_CLAIMABLE.format(lane=LANES[lane])})"
                    " RETURNING id",
                    {**params, "limit": n},
                ).fetchall()
            ]

        def claim(conn: sqlite3.Connection) -> list[Job]:
            # The fast lane first, then the rest: the second statement already sees the
            # first one's jobs running (a call's later job waits for them).
            fast = take(conn, "live", limit if live is None else live)
            ids = fast + take(conn, "post", limit - len(fast) if live is None else limit)
            if not ids:
                return []
            found = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
                f" WHERE j.id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
            order = {job_id: i for i, job_id in enumerate(ids)}
            return sorted((Job.from_row(r) for r in found), key=lambda j: order[j.id])

        return await self.db.run(in_transaction(claim))

    async def renew(self, job_ids: Sequence[int], now: float) -> int:
        if not job_ids:
            return 0
        rows = await self.db.write(
            "UPDATE jobs SET lease_expires = ? WHERE status = 'running' AND lease_owner = ?"
            f" AND id IN ({','.join('?' * len(job_ids))}) RETURNING id",
            (now + self.lease_seconds, self.owner, *job_ids),
        )
        return len(rows)

    async def _book(
        self, job_id: int, status: str, now: float, result: Any, error: Any, due_at: Any
    ) -> bool:
        rows = await self.db.write(
            "UPDATE jobs SET status = ?, updated_at = ?, result = ?, last_error = ?,"
            " due_at = COALESCE(?, due_at), lease_owner = NULL, lease_expires = NULL"
            " WHERE id = ? AND status = 'running' AND lease_owner IS ? RETURNING id",
            (status, now, result, error, due_at, job_id, self.owner),
        )
        return bool(rows)

    async def release(self, job_id: int, now: float) -> None:
        await self.db.write(
            "UPDATE jobs SET status = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?,"
            " lease_owner = NULL, lease_expires = NULL"
            " WHERE id = ? AND status = 'running' AND lease_owner IS ?",
            (now, job_id, self.owner),
        )

    async def requeue_expired(self, now: float, adapter: str | None = None) -> int:
        sql = (
            "UPDATE jobs SET status = 'pending', updated_at = ?, lease_owner = NULL,"
            " lease_expires = NULL WHERE status = 'running'"
            " AND (lease_expires IS NULL OR lease_expires < ?)"
        )
        params: list[Any] = [now, now]
        if adapter is not None:
            sql += " AND adapter = ?"
            params.append(adapter)
        return len(await self.db.write(sql + " RETURNING id", params))

    async def next_due(self, adapter: str, now: float, *, lane: str | None = None) -> float | None:
        lane_sql = LANES[lane]
        args = {
            "adapter": adapter,
            "ahead": now + MAX_DUE_AHEAD,
            "slack": now + CLOCK_SLACK,
        }
        # Two index walks instead of one scan of every pending job: the first job in due
        # order that is in its call's turn, and whether any job was booked by a clock that
        # was ahead (due now, see outbox.CLOCK_SLACK). A job waiting for its call's turn is
        # not due: the job it waits for is (or wakes the worker when it is booked).
        first = await self.db.fetchone(
            f"SELECT j.due_at FROM jobs j JOIN events e ON e.id = j.event_id"
            f" WHERE j.status = 'pending' AND j.adapter = :adapter AND {lane_sql} AND {IN_TURN}"
            " ORDER BY j.due_at LIMIT 1",
            args,
        )
        ahead_ids = AHEAD.format(adapter=":adapter", ahead=":ahead", slack=":slack", lane=lane_sql)
        ahead = await self.db.fetchone(
            "SELECT 1 FROM jobs j JOIN events e ON e.id = j.event_id"
            f" WHERE j.id IN ({ahead_ids}) AND {IN_TURN} LIMIT 1",
            args,
        )
        due = None if first is None else first[0]
        if ahead is not None:
            return now if due is None or due > now else due
        return due

    async def call_events(self, domain: str, uuid: str) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT event FROM events WHERE domain = ? AND uuid = ?", (domain, uuid)
        )
        return {r[0] for r in rows}

    async def job_counts(self) -> dict[str, dict[str, int]]:
        rows = await self.db.fetchall(
            "SELECT adapter, status, COUNT(*) FROM jobs GROUP BY adapter, status"
        )
        return by_adapter(rows)

    async def list_jobs(
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
        rows = await self.db.fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id {clause}"
            " ORDER BY j.id DESC LIMIT ?",
            (*params, limit),
        )
        return [Job.from_row(r) for r in rows]

    async def get_job(self, job_id: int) -> Job | None:
        row = await self.db.fetchone(
            f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id WHERE j.id = ?",
            (job_id,),
        )
        return None if row is None else Job.from_row(row)

    async def retry_dead(self, job_ids: Sequence[int] | None, now: float) -> int:
        sql = (
            "UPDATE jobs SET status = 'pending', due_at = ?, attempts = 0, updated_at = ?,"
            " created_at = ? WHERE status = 'dead'"
        )
        params: list[Any] = [now, now, now]
        if job_ids is not None:
            if not job_ids:
                return 0
            sql += f" AND id IN ({','.join('?' * len(job_ids))})"
            params += list(job_ids)
        return len(await self.db.write(sql + " RETURNING id", params))

    # --- records ------------------------------------------------------------------------

    async def call_record(self, adapter: str, call_key: str, name: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT value FROM crm_objects WHERE adapter = ? AND call_key = ? AND name = ?",
            (adapter, call_key, name),
        )
        return None if row is None else row[0]

    async def put_call_record(
        self, adapter: str, call_key: str, name: str, value: str, now: float
    ) -> None:
        await self.db.write(
            "INSERT OR REPLACE INTO crm_objects (adapter, call_key, name, value, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (adapter, call_key, name, value, now),
        )

    async def adapter_value(self, adapter: str, key: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT value FROM adapter_state WHERE adapter = ? AND key = ?", (adapter, key)
        )
        return None if row is None else row[0]

    async def put_adapter_value(self, adapter: str, key: str, value: str, now: float) -> None:
        await self.db.write(
            "INSERT OR REPLACE INTO adapter_state (adapter, key, value, updated_at)"
            " VALUES (?, ?, ?, ?)",
            (adapter, key, value, now),
        )

    async def meta(self, key: str) -> str | None:
        return await self.db.get_meta(key)

    async def put_meta(self, key: str, value: str) -> None:
        await self.db.set_meta(key, value)

    async def put_meta_if_absent(self, key: str, value: str) -> str:
        return await self.db.set_meta_if_absent(key, value)

    # --- local adapter ------------------------------------------------------------------

    async def local_contact(self, phone: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT id, name, owner_id FROM local_contacts WHERE phone = ?", (phone,)
        )
        return None if row is None else dict(row)

    async def local_add_contact(
        self, contact_id: str, phone: str, name: str, owner_id: str | None, created_at: str
    ) -> dict[str, Any]:
        await self.db.write(
            "INSERT OR IGNORE INTO local_contacts (id, phone, name, owner_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (contact_id, phone, name, owner_id, created_at),
        )
        found = await self.local_contact(phone)
        assert found is not None
        return found

    async def local_add(self, kind: str, row: dict[str, Any]) -> int:
        table, columns, _ = LOCAL[kind]
        rows = await self.db.write(
            f"INSERT INTO {table} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT (call_key) DO UPDATE SET call_key = excluded.call_key RETURNING id",
            [row.get(c) for c in columns],
        )
        return int(rows[0][0])

    async def local_list(self, kind: str, limit: int = 50) -> list[dict[str, Any]]:
        table, _, shown = LOCAL[kind]
        rows = await self.db.fetchall(
            f"SELECT {shown} FROM {table} ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [dict(r) for r in rows]

    async def local_count(self, kind: str) -> int:
        row = await self.db.fetchone(f"SELECT COUNT(*) FROM {LOCAL[kind][0]}")
        return int(row[0]) if row else 0

    async def local_live_ring(self, row: dict[str, Any]) -> None:
        await self.db.write(live_upsert("ringing", _mark, "instr"), live_values(row, "ringing"))

    async def local_live_answer(self, row: dict[str, Any]) -> None:
        await self.db.write(live_upsert("answered", _mark, "instr"), live_values(row, "answered"))

    async def local_live_end(self, call_key: str) -> bool:
        return bool(
            await self.db.write(
                "DELETE FROM local_live WHERE call_key = ? RETURNING call_key", (call_key,)
            )
        )

    async def local_live_list(
        self, limit: int = 200, since: float | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            f"SELECT {', '.join(LIVE_COLUMNS)} FROM local_live WHERE updated_at >= ?"
            " ORDER BY started_at DESC, call_key LIMIT ?",
            (since if since is not None else float("-inf"), limit),
        )
        return [live_listed(r) for r in rows]

    # --- locks, leads, rates ------------------------------------------------------------

    @property
    def locks(self) -> FileLocks:
        return self._file_locks

    async def try_lead(self, name: str) -> bool:
        self._leads.add(name)  # one server per file: it leads everything
        return True

    def leads(self, name: str) -> bool:
        return name in self._leads

    async def resign(self, name: str) -> None:
        self._leads.discard(name)

    async def rate_slot(self, name: str, interval: float) -> float:
        def reserve(conn: sqlite3.Connection) -> float:
            now = time.time()  # one machine: every process shares this clock
            row = conn.execute(
                "INSERT INTO rate_slots (name, next_at) VALUES (?, ? + ?)"
                " ON CONFLICT (name) DO UPDATE SET next_at = MAX(next_at, ?) + ?"
                " RETURNING next_at",
                (name, now, interval, now, interval),
            ).fetchone()
            return max(0.0, row[0] - interval - now)

        return await self.db.run(in_transaction(reserve))

    def listen(self, wake: Callable[[set[str]], None]) -> None:
        return  # one process: the event writer wakes its own workers

    # --- maintenance --------------------------------------------------------------------

    async def prune(self, cutoff: float, chunk: int) -> dict[str, int]:
        deleted = {"jobs": 0, "events": 0, "crm_objects": 0}
        while True:
            n = await self.db.run(in_transaction(partial(_done_jobs, cutoff=cutoff, chunk=chunk)))
            deleted["jobs"] += n
            if n < chunk:
                break
            await asyncio.sleep(0)  # let waiting webhooks take the lock between chunks
        after: int | None = 0
        while after is not None:
            events, objects, after = await self.db.run(
                in_transaction(partial(_events, after=after, cutoff=cutoff, chunk=chunk))
            )
            deleted["events"] += events
            deleted["crm_objects"] += objects
            await asyncio.sleep(0)
        # Calls in progress whose end never came (onlinePBX did not send it).
        stale = await self.db.write(
            "DELETE FROM local_live WHERE updated_at < ? RETURNING call_key", (cutoff,)
        )
        if stale:
            deleted["local_live"] = len(stale)
        return deleted


def _mark(_i: int) -> str:
    return "?"


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


__all__ = ["RUNNING", "SQLiteStorage", "StorageError"]
