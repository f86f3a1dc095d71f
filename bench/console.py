"""Every console page with 100,000 calls stored: < 200 ms each (#16), on both backends.

``python -m bench.console [--calls 100000] [--rounds 20] [--backend sqlite|postgresql|both]``

Fills a fresh SQLite file, or a fresh schema of the PostgreSQL at ``PBX_BRIDGE_TEST_POSTGRES``
(default ``postgresql://postgres@127.0.0.1:5432/test``; dropped afterwards), the way the bridge
would have after a month of traffic (each call a ``call_start`` and a ``call_end`` or
``call_missed``, one job per call, 98 % done, the rest dead or pending, CRM ids), starts the
real app in this process with the console on, logs in, waits for the background search index,
and times each page (wall time of the whole HTTP answer, median and p95 of ``--rounds``
requests). The baseline, measured in the same run, is ``GET /healthz``. The load average is
printed before and after each backend's pages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
import uuid as uuids
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from bench.common import machine, percentile
from bridge.app import create_app
from bridge.settings import Settings

PASSWORD = "bench console password"
DAYS = 30


PG_ENV, PG_DEFAULT = "PBX_BRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"


def make_rows(calls: int, now: float) -> tuple[list[tuple[Any, ...]], ...]:
    """(events, jobs, crm_objects) rows, and the caller of a recent call in one-row list."""
    rng = random.Random(16)
    events, jobs, crm = [], [], []
    span = DAYS * 86400
    event_id = 0
    for i in range(calls):
        at = now - span + span * i / calls
        uuid = f"{rng.getrandbits(128):032x}"
        client = f"79{rng.randrange(10**9):09d}"
        base = {"domain": "bench.onpbx.ru", "uuid": uuid, "caller": client, "callee": "101",
                "direction": "inbound", "gateway": "74991111282", "date": str(int(at))}  # fmt: skip
        event_id += 1
        start = json.dumps({**base, "event": "call_start"}, separators=(",", ":"))
        events.append((event_id, "bench.onpbx.ru", uuid, "call_start", start, at))
        missed = rng.random() < 0.2
        end = "call_missed" if missed else "call_end"
        dialog = "0" if missed else str(rng.randrange(5, 600))
        body = {**base, "event": end, "call_duration": "120", "dialog_duration": dialog,
                "hangup_cause": "NORMAL_CLEARING"}  # fmt: skip
        event_id += 1
        events.append(
            (
                event_id,
                "bench.onpbx.ru",
                uuid,
                end,
                json.dumps(body, separators=(",", ":")),
                at + 90,
            )
        )
        roll = rng.random()
        status = "done" if roll < 0.98 else ("dead" if roll < 0.99 else "pending")
        action = "create_task" if missed else "log_call"
        error = "HTTP 400: bad phone" if status == "dead" else None
        done_at = at + 90 + rng.random() * 3
        # Pending jobs wait for a retry due tomorrow: the workers stay idle while we measure.
        due = now + 86400 if status == "pending" else done_at
        jobs.append((i + 1, event_id, "local", action, status, 1, due, at + 90, done_at, error))
        if status == "done":
            crm.append(("local", f"bench.onpbx.ru/{uuid}", action, f"call:{i}", done_at))
    return events, jobs, crm, [json.loads(events[-3][4])["caller"]]


EVENT_COLUMNS = ("id", "domain", "uuid", "event", "payload", "received_at")
JOB_COLUMNS = ("id", "event_id", "adapter", "action", "status", "attempts", "due_at",
               "created_at", "updated_at", "last_error")  # fmt: skip
CRM_COLUMNS = ("adapter", "call_key", "name", "value", "created_at")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def fill_sqlite(path: Path, calls: int, now: float) -> str:
    events, jobs, crm, (number,) = make_rows(calls, now)
    conn = sqlite3.connect(path)
    conn.executemany(_insert("events", EVENT_COLUMNS), events)
    conn.executemany(_insert("jobs", JOB_COLUMNS), jobs)
    conn.executemany(_insert("crm_objects", CRM_COLUMNS), crm)
    conn.commit()  # no ANALYZE: a bridge's file has no statistics either
    conn.close()
    return number


async def fill_postgres(dsn: str, schema: str, calls: int, now: float) -> str:
    events, jobs, crm, (number,) = make_rows(calls, now)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        for table, columns, rows in (
            ("events", EVENT_COLUMNS, events),
            ("jobs", JOB_COLUMNS, jobs),
            ("crm_objects", CRM_COLUMNS, crm),
        ):
            await conn.copy_records_to_table(table, records=rows, columns=columns)
        for table in ("events", "jobs"):  # identity columns continue after the copied ids
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id)"
                f" FROM {table}))"
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return number


class Probe:
    """SQL on the bench's database, either backend (``?`` placeholders)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Any = None

    async def val(self, sql: str) -> Any:
        url = self.settings.storage.url
        if url is None:
            if self._conn is None:
                self._conn = sqlite3.connect(self.settings.storage.path)
            row = self._conn.execute(sql).fetchone()
        else:
            if self._conn is None:
                from bridge.store.postgres import split_url

                dsn, schema = split_url(url.get_secret_value())
                self._conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
            row = await self._conn.fetchrow(sql)
        return None if row is None else row[0]

    async def close(self) -> None:
        if self._conn is not None:
            result = self._conn.close()
            if asyncio.iscoroutine(result):
                await result


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(calls: int, rounds: int, backend: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-console-"))
    storage: dict[str, Any] = {"path": str(folder / "bridge.db")}
    schema = f"bench_console_{uuids.uuid4().hex[:8]}"
    admin_conn = None
    if backend == "postgresql":
        from bridge.store.postgres import split_url
        from tests.postgres import in_schema

        server = os.environ.get(PG_ENV, PG_DEFAULT)
        admin_conn = await asyncpg.connect(server)
        await admin_conn.execute(f'CREATE SCHEMA "{schema}"')
        storage = {"url": in_schema(server, schema)}
    settings = Settings(
        server={"webhook_token": "bench-token-0123456789abcdef"},
        storage=storage,
        admin={"password": PASSWORD},
        log={"level": "WARNING"},
    )
    try:
        # Create the schema with the real app first, then fill it with the app stopped.
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        await client.close()
        now = time.time()
        started = time.perf_counter()
        if backend == "postgresql":
            dsn, _ = split_url(storage["url"])
            number = await fill_postgres(dsn, schema, calls, now)
        else:
            number = fill_sqlite(folder / "bridge.db", calls, now)
        print(f"\n[{backend}] filled {calls:,} calls in {time.perf_counter() - started:.1f} s")
        await measure(settings, number, now, rounds, calls)
    finally:
        if admin_conn is not None:
            await admin_conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin_conn.close()


async def measure(settings: Settings, number: str, now: float, rounds: int, calls: int) -> None:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    probe = Probe(settings)
    try:
        r = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
        assert r.status == 303, (r.status, await r.text())
        started, last = time.perf_counter(), await probe.val("SELECT MAX(id) FROM events")
        while await probe.val("SELECT value FROM meta WHERE key = 'admin_indexed_through'") != str(
            last
        ):
            await asyncio.sleep(0.2)
        took = time.perf_counter() - started
        print(f"search index caught up with {last:,} events in {took:.1f} s (background)")
        if settings.storage.url is not None:
            # A month-old database has statistics (autovacuum); one filled a minute ago may
            # not have them for the tables the indexer just wrote.
            await probe.val("ANALYZE")
        uuid = await probe.val("SELECT uuid FROM events ORDER BY id DESC LIMIT 1")
        dead = await probe.val("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
        yesterday = time.strftime("%Y-%m-%d", time.localtime(now - 86400))
        formatted = f"8 ({number[1:4]}) {number[4:7]}-{number[7:9]}-{number[9:]}"
        pages = {
            "/healthz (baseline)": "/healthz",
            "overview": "/admin/",
            "calls (recent)": "/admin/calls",
            "calls ?q=number, other format": f"/admin/calls?q={formatted}",
            "calls ?q=uuid": f"/admin/calls?q={uuid}",
            "calls ?from=&to= (one day)": f"/admin/calls?from={yesterday}&to={yesterday}",
            "call page": f"/admin/calls/{uuid}",
            f"outbox ?status=dead ({dead:,} dead)": "/admin/outbox?status=dead",
            "outbox ?status=pending": "/admin/outbox?status=pending",
            "rejected webhooks": "/admin/rejected",
            "settings": "/admin/settings",
            "calls in progress": "/admin/live",
        }
        backend = (settings.storage.url and "postgresql") or "sqlite"
        print(f"{machine()}\n[{backend}] {calls:,} calls ({2 * calls:,} events), {rounds} rounds")
        print(f"before: {load()}")
        print(f"{'page':40} {'p50 ms':>8} {'p95 ms':>8} {'× /healthz':>11}")
        base = None
        for name, path in pages.items():
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                r = await client.get(path)
                await r.read()
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200, (path, r.status)
            p50, p95 = percentile(times, 50), percentile(times, 95)
            base = base or p50
            verdict = "ok" if p95 < 200 else "OVER 200 ms"
            print(f"{name:40} {p50:8.1f} {p95:8.1f} {p50 / base:10.1f}×  {verdict}")
        print(f"after: {load()}")
    finally:
        await probe.close()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        asyncio.run(run(args.calls, args.rounds, backend))


if __name__ == "__main__":
    main()
