"""The reports port on SQLite: a page's questions in one hop to the console's own reader.

A page asks several questions; through aiosqlite each would cost a hop through a busy event
loop. Here a page's whole coroutine (``bridge/store/reports.py``) runs on one thread with its
own read-only connection (WAL: readers never block the writer): its ``Q`` answers at once, so
the coroutine never suspends and :func:`drive` runs it to the end in that thread. Writes run
the same way on the database's writer thread, in one transaction (``Database.run``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bridge.store.db import in_transaction
from bridge.store.ports import StorageError
from bridge.store.reports import Ask, Q, Reports
from bridge.store.sqlite import SQLiteStorage

T = TypeVar("T")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (every await answered at once) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a report awaited something other than its SQLite questions")


class SQLiteQ(Q):
    dialect = "sqlite"
    least, greatest = "MIN", "MAX"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def all(self, sql: str, *args: Any) -> list[Any]:
        return self._conn.execute(sql, args).fetchall()

    async def run(self, sql: str, *args: Any) -> int:
        return self._conn.execute(sql, args).rowcount

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def in_list(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"IN ({','.join('?' * len(values))})", list(values)

    def hour_of(self, column: str) -> str:
        return f"CAST(({column} - ?) / 3600 AS INTEGER)"  # truncation: floor for x >= 0

    def contains(self, column: str) -> str:
        return f"instr({column}, ?) > 0"


class SQLiteReports(Reports):
    def __init__(self, storage: SQLiteStorage) -> None:
        self._db = storage.db
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._db.path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 2000")
            self._conn = conn
        return self._conn

    async def _read(self, job: Ask[T]) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="admin-reader")

        def ask() -> T:
            return drive(job(SQLiteQ(self._connect())))

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, ask)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    async def _write(self, job: Ask[T]) -> T:
        return await self._db.run(in_transaction(lambda conn: drive(job(SQLiteQ(conn)))))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown()
