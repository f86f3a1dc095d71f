"""Every console page with 100,000 calls stored: < 200 ms each (#16).

``python -m bench.console [--calls 100000] [--rounds 20]``

Fills a fresh SQLite file the way the bridge would have after a month of traffic (each call a
``call_start`` and a ``call_end`` or ``call_missed``, one job per call, 98 % done, the rest
dead or pending, CRM ids, refused webhooks), starts the real app in this process with the
console on, logs in, and times each page (wall time of the whole HTTP answer, median and p95
of ``--rounds`` requests). The baseline, measured in the same run, is ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bench.common import machine, percentile
from bridge.app import create_app
from bridge.settings import Settings

PASSWORD = "bench console password"
DAYS = 30


def fill(path: Path, calls: int, now: float) -> str:
    """Write the rows; returns one phone number that occurs in a few calls."""
    rng = random.Random(16)
    conn = sqlite3.connect(path)
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
        events.append(
            (
                event_id,
                uuid,
                "call_start",
                json.dumps({**base, "event": "call_start"}, separators=(",", ":")),
                at,
            )
        )
        missed = rng.random() < 0.2
        end = "call_missed" if missed else "call_end"
        dialog = "0" if missed else str(rng.randrange(5, 600))
        body = {**base, "event": end, "call_duration": "120", "dialog_duration": dialog,
                "hangup_cause": "NORMAL_CLEARING"}  # fmt: skip
        event_id += 1
        events.append((event_id, uuid, end, json.dumps(body, separators=(",", ":")), at + 90))
        roll = rng.random()
        status = "done" if roll < 0.98 else ("dead" if roll < 0.99 else "pending")
        action = "create_task" if missed else "log_call"
        error = "HTTP 400: bad phone" if status == "dead" else None
        done_at = at + 90 + rng.random() * 3
        # Pending jobs wait for a retry due tomorrow: the workers stay idle while we measure.
        due = now + 86400 if status == "pending" else done_at
        jobs.append((event_id, "local", action, status, 1, due, at + 90, done_at, error))
        if status == "done":
            crm.append(("local", f"bench.onpbx.ru/{uuid}", action, f"call:{i}", done_at))
    conn.executemany(
        "INSERT INTO events (id, domain, uuid, event, payload, received_at) VALUES"
        " (?, 'bench.onpbx.ru', ?, ?, ?, ?)",
        events,
    )
    conn.executemany(
        "INSERT INTO jobs (event_id, adapter, action, status, attempts, due_at, created_at,"
        " updated_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        jobs,
    )
    conn.executemany(
        "INSERT INTO crm_objects (adapter, call_key, name, value, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        crm,
    )
    conn.commit()
    conn.close()
    return json.loads(events[-3][3])["caller"]


async def run(calls: int, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-console-"))
    settings = Settings(
        server={"webhook_token": "bench-token-0123456789abcdef"},
        storage={"path": str(folder / "bridge.db")},
        admin={"password": PASSWORD},
        log={"level": "WARNING"},
    )
    # Create the schema with the real app first, then fill it with the app stopped.
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    await client.close()
    now = time.time()
    started = time.perf_counter()
    number = fill(folder / "bridge.db", calls, now)
    print(f"filled {calls:,} calls in {time.perf_counter() - started:.1f} s")
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        r = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
        assert r.status == 303, (r.status, await r.text())
        conn = sqlite3.connect(folder / "bridge.db")
        started, last = time.perf_counter(), conn.execute("SELECT MAX(id) FROM events").fetchone()
        while conn.execute(
            "SELECT value FROM meta WHERE key = 'admin_indexed_through'"
        ).fetchone() != (str(last[0]),):
            await asyncio.sleep(0.2)
        took = time.perf_counter() - started
        print(f"search index caught up with {last[0]:,} events in {took:.1f} s (background)")
        uuid = conn.execute("SELECT uuid FROM events ORDER BY id DESC LIMIT 1").fetchone()[0]
        dead = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'dead'").fetchone()[0]
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
        print(f"\n{machine()}\n{calls:,} calls ({2 * calls:,} events), {rounds} rounds each")
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
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.rounds))


if __name__ == "__main__":
    main()
