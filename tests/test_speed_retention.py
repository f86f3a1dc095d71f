"""Retention: old done jobs, their events and per-call CRM ids are pruned on a schedule;
pending and dead work is never touched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bridge.store.events import EventWriter, IncomingEvent
from bridge.store.outbox import Outbox
from bridge.store.retention import prune
from bridge.store.sqlite import SQLiteStorage
from bridge.store.state import CallState
from tests.conftest import WEBHOOK, FakeClock, rows, vendor_sample

DAY = 86400.0


async def seed(db: SQLiteStorage, clock: FakeClock, calls: range) -> Outbox:
    writer = EventWriter(db, lambda event: [("crm", "log_call")], clock=clock)
    for i in calls:
        await writer.submit(IncomingEvent("pbx.example", f"u{i}", "call_end", {"uuid": f"u{i}"}))
        await CallState(db, "crm", f"pbx.example/u{i}", clock).put("log_call", f"crm-{i}")
    return Outbox(db, clock)


async def table(db: SQLiteStorage, sql: str) -> list[Any]:
    return [tuple(r) for r in await db.db.fetchall(sql)]


async def test_old_done_work_goes_pending_dead_and_recent_stay(tmp_path: Path) -> None:
    clock = FakeClock()
    db = await SQLiteStorage.open(tmp_path / "r.db")
    try:
        outbox = await seed(db, clock, range(7))
        jobs = await outbox.claim("crm", 10)
        for job in jobs[:5]:
            await outbox.mark_done(job.id, "ok")
        await outbox.mark_dead(jobs[5].id, "HTTP 400")
        # due an hour after the later claim (a due time over a day ahead is a clock step)
        await outbox.mark_retry(jobs[6].id, clock() + 31 * DAY + 3600, "HTTP 503")
        clock.advance(31 * DAY)
        recent = await seed(db, clock, range(7, 9))  # done today
        for job in await recent.claim("crm", 10):
            if job.uuid in ("u7", "u8"):
                await recent.mark_done(job.id, "ok")

        deleted = await prune(db, clock() - 30 * DAY, chunk=2)  # chunks: several rounds

        assert deleted == {"jobs": 5, "events": 5, "crm_objects": 5}
        left = await table(
            db,
            "SELECT e.uuid, j.status FROM jobs j JOIN events e"
            " ON e.id = j.event_id ORDER BY e.uuid",
        )
        assert left == [("u5", "dead"), ("u6", "pending"), ("u7", "done"), ("u8", "done")]
        assert await table(db, "SELECT uuid FROM events ORDER BY uuid") == [
            ("u5",),
            ("u6",),
            ("u7",),
            ("u8",),
        ]
        assert await table(db, "SELECT call_key FROM crm_objects ORDER BY call_key") == [
            (f"pbx.example/u{i}",) for i in (5, 6, 7, 8)
        ]
        assert await prune(db, clock() - 30 * DAY) == {"jobs": 0, "events": 0, "crm_objects": 0}
    finally:
        await db.close()


async def until_empty(settings: Any, sql: str) -> None:
    for _ in range(100):  # bounded: 2 s at most
        if not await rows(settings, sql):
            return
        await asyncio.sleep(0.02)
    assert await rows(settings, sql) == []


async def test_the_bridge_prunes_on_its_own(make_settings: Any, start_bridge: Any) -> None:
    clock = FakeClock()
    settings = make_settings(storage={"retention_days": 1})
    client = await start_bridge(settings, clock=clock)
    payload = vendor_sample("call_end")
    assert (await client.post(WEBHOOK, data=payload)).status == 200
    await until_empty(settings, "SELECT id FROM jobs WHERE status != 'done'")  # delivered
    clock.advance(2 * DAY)
    # a call today: retention counts back from the newest event, never past it (#12 item 12)
    assert (await client.post(WEBHOOK, data=vendor_sample("call_start"))).status == 200
    await client.close()

    await start_bridge(settings, clock=clock)  # the pruner runs at start, then hourly
    # the old call's jobs (over + log_call) go; today's ring (outbound call_start) stays
    await until_empty(settings, "SELECT id FROM jobs WHERE action != 'ringing'")
    assert await rows(settings, "SELECT action FROM jobs") == [("ringing",)]
    for _ in range(100):  # the events go in a later transaction than the jobs
        if await rows(settings, "SELECT event FROM events") == [("call_start",)]:
            break
        await asyncio.sleep(0.02)
    assert await rows(settings, "SELECT event FROM events") == [("call_start",)]


async def test_old_events_that_caused_no_job_go_too(tmp_path: Path) -> None:
    clock = FakeClock()
    db = await SQLiteStorage.open(tmp_path / "s.db")
    try:
        writer = EventWriter(db, lambda event: [], clock=clock)  # e.g. call_start
        await writer.submit(IncomingEvent("pbx.example", "s1", "call_start", {}))
        clock.advance(2 * DAY)
        await writer.submit(IncomingEvent("pbx.example", "s2", "call_start", {}))
        assert (await prune(db, clock() - DAY))["events"] == 1
        assert await table(db, "SELECT uuid FROM events") == [("s2",)]
    finally:
        await db.close()
