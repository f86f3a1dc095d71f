"""The SQLite Database under what a loaded machine does to it.

Opening a file that another process is migrating or writing waits, it does not fail: replicas,
`pbx-bridge migrate` and `serve` start together, and the first opener's WAL switch and migration
can hold the file longer than the busy timeout on a loaded machine (seen in CI as "database is
locked" from a concurrent opener).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from bridge.store import migrations
from bridge.store.db import Database


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    held.set()
    threading.Event().wait(seconds)
    conn.execute("ROLLBACK")
    conn.close()


async def test_open_waits_for_a_lock_held_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    await (await Database.open(path)).close()  # an existing file, as at a restart
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.6, held))
    holder.start()
    try:
        held.wait(5)
        db = await Database.open(path, busy_timeout_ms=50)  # far shorter than the hold
        assert db.migrated == (migrations.LATEST, migrations.LATEST)
        await db.close()
    finally:
        holder.join()


async def test_concurrent_openers_of_a_fresh_file_all_open(tmp_path: Path) -> None:
    for n in range(10):
        path = tmp_path / f"fresh-{n}.db"
        opened = await asyncio.gather(*(Database.open(path, busy_timeout_ms=1) for _ in range(4)))
        assert sorted(db.migrated[0] for db in opened) == [0] + [migrations.LATEST] * 3
        for db in opened:
            await db.close()


async def test_put_if_absent_answers_what_it_stored_while_the_reader_holds_a_snapshot(
    tmp_path: Path,
) -> None:
    # The console's first login on a big file once got None here: the reader connection still
    # held an older snapshot when the value written by the writer was read back.
    db = await Database.open(tmp_path / "bridge.db")
    try:
        await db.conn.execute("BEGIN")
        assert await db.fetchone("SELECT count(*) FROM meta") is not None  # snapshot taken
        assert await db.set_meta_if_absent("session_key", "k1") == "k1"
        assert await db.set_meta_if_absent("session_key", "k2") == "k1"
        await db.conn.execute("ROLLBACK")
    finally:
        await db.close()


async def test_every_read_sees_what_was_committed_before_it_while_other_tasks_read(
    tmp_path: Path,
) -> None:
    # Every task shares the reader connection. A read that left its statement active between
    # hops (execute, fetch, close) kept that connection's read transaction, and so its WAL
    # snapshot, open: another task's read queued in between missed a commit made just before
    # it (a value just written read back as None at the console's first login on a big file).
    db = await Database.open(tmp_path / "bridge.db")
    pad = [(f"pad{i:05}", "x" * 40) for i in range(2000)]
    await db.write_many("INSERT INTO meta (key, value) VALUES (?, ?)", pad)
    stop = asyncio.Event()

    async def other_task_reading() -> None:
        while not stop.is_set():
            await db.fetchone("SELECT key FROM meta WHERE key LIKE 'pad%' ORDER BY key")
            await db.fetchall("SELECT key FROM meta WHERE key LIKE 'pad%' LIMIT 300")

    readers = [asyncio.create_task(other_task_reading()) for _ in range(3)]
    try:
        stale = []
        for i in range(100):
            await db.set_meta("probe", str(i))  # committed by the writer connection
            if (seen := await db.get_meta("probe")) != str(i):
                stale.append((i, seen))
        assert stale == []
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await db.close()
