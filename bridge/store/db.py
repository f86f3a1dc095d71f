"""One SQLite connection in WAL mode with ``synchronous=FULL``: a commit is on disk.

All writes are serialised by one asyncio lock: a write issued by another coroutine in the
middle of an open transaction would otherwise join (and be rolled back with) that transaction.

Two connections share the file. Reads and :meth:`Database.transaction` use the aiosqlite one,
which costs one hop to its thread (and back through the event loop) per statement. The hot
writes (:meth:`Database.run`, and so :meth:`write`, :meth:`write_many` and the event group
commit) run a whole transaction as one function on a dedicated writer thread: one hop per
commit. Under load each hop waits for a turn of a busy event loop, so a five-statement
transaction held the write lock five times longer than it needed to (benchmarked in
BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bridge.store import migrations
from bridge.store.ports import StorageError

__all__ = ["Database", "StorageError", "in_transaction"]

T = TypeVar("T")

PROBE_PAYLOAD = "{}" + " " * 4096  # about one event with its jobs, a page or two
FILE_MODE = 0o600  # the file holds the webhook token, signing key, sessions, OAuth tokens
OPEN_WAIT_SECONDS = 30.0  # an opener waits this long for another's WAL switch or migration
OPEN_RETRY_PAUSE = 0.01


def _private(path: Path) -> None:
    """Create the database file 0600 (SQLite gives its -wal and -shm the database file's
    mode) and tighten the files an older version left world-readable."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for name in (str(path), f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o777 != FILE_MODE:
                os.chmod(name, FILE_MODE)


def _lock_refused(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def _when_unlocked(step: Callable[[], T]) -> T:
    """``step()``, tried again while another opener of the file holds it, for OPEN_WAIT_SECONDS.

    Two things make an opener fail at once with "database is locked" although a busy timeout is
    set: turning a fresh file to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY
    without calling its busy handler when two openers both hold a read lock and both want to
    upgrade (its deadlock avoidance); and another opener's migration can hold the write lock
    longer than the busy timeout on a loaded machine. Both happen when replicas, `migrate` and
    `serve` start together, and an opener has time to wait: it is starting up.
    """
    deadline = time.monotonic() + OPEN_WAIT_SECONDS
    while True:
        try:
            return step()
        except sqlite3.Error as exc:
            if not _lock_refused(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(OPEN_RETRY_PAUSE)


def _pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    _when_unlocked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


async def _wal(conn: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode = WAL`` on the reader, retried as ``_when_unlocked`` explains."""
    deadline = time.monotonic() + OPEN_WAIT_SECONDS
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.Error as exc:
            if not _lock_refused(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(OPEN_RETRY_PAUSE)


def in_transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """``fn`` wrapped in ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back if it raises)."""

    def run(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return result

    return run


class Database:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        writer: sqlite3.Connection | None = None,
        thread: ThreadPoolExecutor | None = None,
    ) -> None:
        self.conn = conn
        self.path = path
        self._writer = writer
        self._thread = thread
        self._lock = asyncio.Lock()
        self.migrated: tuple[int, int] = (0, 0)  # schema version before and after open

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = 2000, migrate: bool = True
    ) -> Database:
        """Open (creating) the file and bring its schema to the latest migration."""
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            _private(path)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await _wal(conn)
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error:
            await conn.close()
            raise
        thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()

        def connect() -> sqlite3.Connection:
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            writer.row_factory = sqlite3.Row
            _pragmas(writer, busy_timeout_ms)
            return writer

        try:
            writer = await loop.run_in_executor(thread, connect)
        except sqlite3.Error:
            thread.shutdown()
            await conn.close()
            raise
        db = cls(conn, path, writer, thread)
        if migrate:
            try:
                db.migrated = await db.run(partial(_migrate, where=str(path)))
            except BaseException:
                await db.close()
                raise
        return db

    async def close(self) -> None:
        """Close both connections; closing twice is harmless."""
        writer, thread, self._writer, self._thread = self._writer, self._thread, None, None
        if writer is not None and thread is not None:
            async with self._lock:
                await asyncio.get_running_loop().run_in_executor(thread, writer.close)
            thread.shutdown()
        await self.conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer thread, under the write lock, in one hop.

        ``fn`` is plain synchronous sqlite3 code; wrap it with :func:`in_transaction` to
        commit. An sqlite3 error becomes StorageError.
        """
        assert self._writer is not None and self._thread is not None, "use Database.open"
        async with self._lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._thread, fn, self._writer
                )
            except sqlite3.Error as exc:
                raise StorageError(str(exc)) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any error rolls back and raises StorageError."""
        async with self._lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(str(exc)) from exc
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    await self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(str(exc)) from exc
                raise

    async def write(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """One statement in its own transaction; returns any ``RETURNING`` rows."""
        return await self.run(in_transaction(lambda c: c.execute(sql, params).fetchall()))

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        await self.run(in_transaction(lambda c: c.executemany(sql, rows)))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        # One hop: the statement runs to its end (and is reset) in a single call on the
        # reader's thread. As three hops (execute, fetch, close) it stayed active between
        # them, and an active statement keeps the connection's read transaction, i.e. its WAL
        # snapshot, open: the reads of other tasks queued in between (every task shares this
        # connection) saw that older snapshot, not what the writer had committed since (a
        # value just written read back as None: the console's first login on a big file).
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """The first row (every caller asks for one row: a key, ``LIMIT 1`` or a count)."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def ping_write(self, now: float) -> None:
        """Prove a commit reaches the disk now (for /readyz): write a heartbeat row."""
        await self.write(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat', ?)", (repr(now),)
        )

    async def probe_event_write(self, now: float) -> None:
        """Prove an event-sized commit reaches the disk now: a padded row put into ``events``
        and taken out again in one transaction. A heartbeat row can still fit where events
        no longer do (a nearly full disk), so after a failed event commit only this says the
        database takes events again."""

        def probe(conn: sqlite3.Connection) -> None:
            (row_id,) = conn.execute(
                "INSERT INTO events (domain, uuid, event, payload, received_at)"
                " VALUES ('', ?, 'readyz_probe', ?, ?) RETURNING id",
                (f"readyz-probe-{now!r}", PROBE_PAYLOAD, now),
            ).fetchone()
            conn.execute("DELETE FROM events WHERE id = ?", (row_id,))

        await self.run(in_transaction(probe))

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    async def set_meta(self, key: str, value: str) -> None:
        await self.write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return what is stored."""

        # Written and read back in one transaction on the writer: one hop, and atomic. (Reads
        # through the reader connection see every commit since fetchall/fetchone run in one
        # hop; before that, a read left open by another task made this read back None.)
        def put(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
            return conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

        return await self.run(in_transaction(put))


def _migrate(conn: sqlite3.Connection, *, where: str) -> tuple[int, int]:
    """Apply the pending migrations under the write lock; (version before, version after)."""
    # The lock: a second process waits, then finds them done.
    _when_unlocked(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        version = 0
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > migrations.LATEST:
            raise StorageError(migrations.too_new(version, where))
        for number in range(version + 1, migrations.LATEST + 1):
            for statement in migrations.statements(number, "sqlite"):
                conn.execute(statement)
        if version < migrations.LATEST:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(migrations.LATEST),),
            )
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return version, migrations.LATEST
