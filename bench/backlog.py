"""Target 5: a backlog of 1,000,000 pending jobs.

    python -m bench.backlog [--jobs 1000000] [--drain-seconds 60]

1. Builds a database with ``jobs`` pending call_end jobs (bulk insert, not timed).
2. Restart: time from starting ``pbx-bridge serve`` to ``/readyz`` answering 200, with the
   backlog and (baseline, same run) with an empty database.
3. Drain: the bridge delivers to a loopback CRM with no limit for ``drain-seconds``; its RSS
   is sampled every second (baseline: the idle bridge on the empty database).
4. Retention: the done rows are pruned (``storage.retention_days`` is what the scheduled task
   uses; here the cut-off is "now"), timing the longest single delete transaction.

Needs about 1.5 GB of disk under $TMPDIR for a million jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import (
    HOST,
    FakeCRM,
    call_end_form,
    free_port,
    machine,
    rss_mb,
    stop,
    write_settings,
)
from bridge.store.retention import prune
from bridge.store.sqlite import SQLiteStorage

ADAPTER = "crm"


async def build(path: Path, jobs: int) -> None:
    db = await SQLiteStorage.open(path)  # the bridge's own schema
    await db.close()
    fields = dict(re.findall(r"([^&=]+)=([^&]*)", call_end_form()))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # set-up only; the bridge runs with FULL
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO events (id, domain, uuid, event, payload, received_at)"
            " VALUES (?, 'onlinepbx.ru', ?, 'call_end', ?, ?)",
            (
                (i, f"b{i}", json.dumps({**fields, "uuid": f"b{i}"}), now)
                for i in range(1, jobs + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO jobs (event_id, adapter, action, due_at, created_at, updated_at)"
            " VALUES (?, ?, 'log_call', ?, ?, ?)",
            ((i, ADAPTER, now, now, now) for i in range(1, jobs + 1)),
        )
    conn.close()


async def ready_after(config: Path, port: int, log: Path) -> tuple[float, subprocess.Popen[bytes]]:
    """Start the bridge; seconds until /readyz answers 200."""
    began = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--config", str(config), "serve"],
            stdout=out,
            stderr=out,
        )
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - began < 60:
            try:
                async with session.get(f"http://{HOST}:{port}/readyz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - began, proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    stop(proc)
    raise RuntimeError("the bridge was not ready within 60 s")


def count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def main(jobs: int, drain_seconds: float) -> None:
    print(f"machine: {machine()}")
    crm = FakeCRM()
    base = await crm.start()
    table = {"type": "http", "url": base + "/hook", "secret": "s" * 24}
    table |= {"rate_limit": 0, "concurrency": 16}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
            work = Path(tmp)
            empty, full = work / "empty", work / "full"
            empty.mkdir()
            full.mkdir()
            began = time.monotonic()
            await build(full / "bridge.db", jobs)
            size = (full / "bridge.db").stat().st_size / 2**20
            print(
                f"built {jobs:,} pending jobs in {time.monotonic() - began:.0f} s ({size:.0f} MiB)"
            )

            port = free_port()
            config = write_settings(empty, port, {ADAPTER: table})
            took, proc = await ready_after(config, port, empty / "bridge.log")
            await asyncio.sleep(3)
            idle_rss = rss_mb(proc.pid)
            stop(proc)
            print(f"empty database: ready in {took:.2f} s, idle RSS {idle_rss:.0f} MB")

            port = free_port()
            config = write_settings(full, port, {ADAPTER: table})
            took_full, proc = await ready_after(config, port, full / "bridge.log")
            print(
                f"{jobs:,} pending: ready in {took_full:.2f} s"
                f" ({took_full / took:.2f}x the empty start; target < 5 s)"
            )
            samples = []
            t0 = time.monotonic()
            while time.monotonic() - t0 < drain_seconds:
                await asyncio.sleep(1)
                samples.append(rss_mb(proc.pid))
            stop(proc)
            drained = len(crm.accepted)
            print(
                f"drained {drained:,} jobs in {drain_seconds:.0f} s"
                f" ({drained / drain_seconds:.0f}/s);"
                f" RSS first {samples[0]:.0f} MB, max {max(samples):.0f} MB, last"
                f" {samples[-1]:.0f} MB ({max(samples) / idle_rss:.2f}x idle; target < 150 MB)"
            )

            db_path = full / "bridge.db"
            done = count(db_path, "SELECT COUNT(*) FROM jobs WHERE status = 'done'")
            db = await SQLiteStorage.open(db_path)
            longest = 0.0
            original = db.db.run

            async def timed(fn):  # type: ignore[no-untyped-def]
                nonlocal longest
                start = time.monotonic()
                try:
                    return await original(fn)
                finally:
                    longest = max(longest, time.monotonic() - start)

            db.db.run = timed  # type: ignore[method-assign]
            start = time.monotonic()
            deleted = await prune(db, time.time() + 1)
            await db.close()
            pending = count(db_path, "SELECT COUNT(*) FROM jobs WHERE status = 'pending'")
            print(
                f"retention: {done:,} done jobs → deleted {deleted} in"
                f" {time.monotonic() - start:.1f} s, longest transaction"
                f" {longest * 1000:.0f} ms; {pending:,} pending untouched"
            )
    finally:
        await crm.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--drain-seconds", type=float, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.drain_seconds))
