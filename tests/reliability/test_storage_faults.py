"""The database fails under the running bridge: nothing is acknowledged that is not on disk,
/readyz turns red, and everything recovers by itself when the fault clears (no restart).

Faults: a connection that may not write (SQLite's own SQLITE_READONLY, as for a read-only
file; the suite runs as root, for whom chmod changes nothing), a write lock held by another
process (SQLITE_BUSY after busy_timeout), and a full disk as an injected failing write (every
transaction fails with SQLite's "database or disk is full").
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bridge.keys import DB
from bridge.samples import sample
from bridge.store.db import StorageError
from tests.conftest import WEBHOOK, rows
from tests.reliability.fakes import HttpReceiver

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")  # the write lock (WAL: readers go on)
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


class FailingWrites:
    """Every write transaction fails with ``error``, as on a disk that stopped taking writes
    (SQLITE_FULL / SQLITE_IOERR come at commit, when the WAL is appended)."""

    def __init__(self, db: Any, error: str = "disk I/O error (injected)") -> None:
        self.db = db
        self.error = error
        self.real_transaction = db.transaction
        self.real_run = db.run
        self.on = False

    def transaction(self) -> Any:
        if self.on:
            raise StorageError(self.error)
        return self.real_transaction()

    async def run(self, fn: Any) -> Any:  # the writer thread's path (events, job outcomes)
        if self.on:
            raise StorageError(self.error)
        return await self.real_run(fn)

    def install(self) -> FailingWrites:
        self.db.transaction = self.transaction
        self.db.run = self.run
        return self


async def _query_only(db: Any, on: bool) -> None:
    pragma = f"PRAGMA query_only = {'ON' if on else 'OFF'}"
    await db.conn.execute(pragma)  # both connections: reads (aiosqlite) and the writer thread
    await db.run(lambda conn: conn.execute(pragma))


@asynccontextmanager
async def read_only(app: Any) -> AsyncIterator[None]:
    await _query_only(app[DB].db, True)
    yield
    await _query_only(app[DB].db, False)


@asynccontextmanager
async def disk_full(app: Any) -> AsyncIterator[None]:
    writes = FailingWrites(app[DB].db, "database or disk is full (injected)").install()
    writes.on = True
    yield
    writes.on = False


@asynccontextmanager
async def locked_by_another_process(app: Any) -> AsyncIterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(app[DB].db.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(10)


FAULTS = {"read-only": read_only, "disk full": disk_full, "locked": locked_by_another_process}


def _event(n: int) -> dict[str, str]:
    return sample("call_end", uuid=f"storage-{n}")


async def _stored(settings: Any) -> set[str]:
    return {r[0] for r in await rows(settings, "SELECT uuid FROM events")}


async def _all_delivered(settings: Any) -> None:
    for _ in range(300):
        done = await rows(settings, "SELECT COUNT(*) FROM jobs WHERE status = 'done'")
        # every call_end: log_call + over (live actions are on by default)
        if done[0][0] == 2 * len(await _stored(settings)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(await rows(settings, "SELECT id, status, last_error FROM jobs"))


@pytest.mark.parametrize("fault", FAULTS)
async def test_webhook_answers_503_and_recovers_by_itself(
    fault: str, make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    settings = make_settings(
        storage={"busy_timeout_ms": 100},
        delivery={"retry_base_seconds": 0.05},
        adapters={"local": {}},
    )
    client = await start_bridge(settings)
    assert (await client.post(WEBHOOK, data=_event(0))).status == 200
    await _all_delivered(settings)
    answers: dict[str, int] = {}
    async with FAULTS[fault](client.app):
        for n in range(1, 6):
            r = await client.post(WEBHOOK, data=_event(n))
            answers[f"storage-{n}"] = r.status
            if r.status != 200:
                assert r.status == 503
                assert (await r.json())["error"] == "storage_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["database"].startswith("not writable")
    assert 503 in answers.values(), answers
    stored = await _stored(settings)
    for uuid, status in answers.items():
        assert (uuid in stored) == (status == 200), f"{uuid}: answered {status}"
    # The fault is gone: ready again, events accepted and delivered, with no restart.
    assert (await client.get("/readyz")).status == 200
    assert (await client.post(WEBHOOK, data=_event(99))).status == 200
    await _all_delivered(settings)


async def test_outcome_not_booked_while_db_fails_is_booked_once_it_recovers(
    make_settings: Callable[..., Any], start_bridge: Callable[..., Any]
) -> None:
    crm = await HttpReceiver(clock=lambda: 0.0).start()
    try:
        settings = make_settings(
            delivery={"retry_base_seconds": 0.05},
            adapters={
                "hook": {
                    "type": "http",
                    "url": crm.base_url + "/hook",
                    "secret": "s" * 20,
                    "rate_limit": 0,
                }
            },
        )
        client = await start_bridge(settings)
        writes = FailingWrites(client.app[DB].db).install()

        def fail_after_crm_call(_seen: Any) -> None:
            writes.on = True  # the CRM has the call; the bridge cannot write that down
            crm.on_request = None

        crm.on_request = fail_after_crm_call
        assert (await client.post(WEBHOOK, data=sample("call_end"))).status == 200
        for _ in range(100):
            if crm.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        status = await rows(settings, "SELECT status FROM jobs")
        assert status == [("running",)]  # nothing could be written
        writes.on = False
        for _ in range(300):  # no restart: the worker books it by itself
            status = await rows(settings, "SELECT status FROM jobs")
            if status == [("done",)]:
                break
            await asyncio.sleep(0.02)
        assert status == [("done",)]
        assert len(crm.idempotency_keys()) == 1  # a repeat, if any, under the same key
    finally:
        await crm.close()
