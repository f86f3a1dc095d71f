"""The reports port on both backends: the hourly call chart from the per-call table the
indexer keeps, merged with the newest events it has not reached yet."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.settings import StorageSettings
from bridge.store import IncomingEvent, open_storage
from bridge.store.reports import reports_for

HOUR = 3600.0
START = 1_780_000_000.0 // HOUR * HOUR


def ev(uuid: str, event: str, **fields: str) -> IncomingEvent:
    return IncomingEvent("d.onpbx.ru", uuid, event, {"uuid": uuid, "event": event, **fields})


async def test_calls_per_hour_counts_each_call_once_indexed_or_not(
    backend: str | None, tmp_path: Path
) -> None:
    settings = StorageSettings(url=backend) if backend else StorageSettings(path=tmp_path / "r.db")
    storage = await open_storage(settings)
    reports = reports_for(storage)
    try:
        at = START + 2 * HOUR + 10
        await storage.append(
            [
                ev("a", "call_missed"),
                ev("a", "call_end", dialog_duration="0"),  # missed: once, not twice
                ev("b", "call_end", dialog_duration="31"),  # answered
                ev("c", "call_missed"),
                ev("d", "call_start"),  # not over: not in the chart
            ],
            {},
            at,
        )

        async def chart() -> list[tuple[int, int]]:
            return (await reports.overview([], START)).calls_per_hour

        expected = [(0, 0)] * 24
        expected[2] = (1, 2)
        assert await chart() == expected  # nothing indexed yet: all from the events
        assert await reports.index_calls() == 5
        assert await chart() == expected  # all from admin_calls
        # c's answered end comes an hour later, after c's missed was indexed: c counts once,
        # answered, in the hour of its first end event.
        await storage.append([ev("c", "call_end", dialog_duration="12")], {}, at + HOUR)
        expected[2] = (2, 1)
        assert await chart() == expected  # indexed part and the newest event, merged
        await reports.index_calls()
        assert await chart() == expected
        assert await reports.index_calls() == 0
    finally:
        await reports.close()
        await storage.close()


async def test_the_alerts_questions(backend: str | None, tmp_path: Path) -> None:
    settings = StorageSettings(url=backend) if backend else StorageSettings(path=tmp_path / "r.db")
    storage = await open_storage(settings)
    reports = reports_for(storage)
    try:
        assert await reports.last_event_id() == 0
        plan = {"call_end": [("crm", "log_call")]}
        recovered = IncomingEvent("d.onpbx.ru", "r", "call_end", {"uuid": "r"}, recovered=True)
        await storage.append([ev("a", "call_end"), ev("b", "call_end"), recovered], plan, START)
        assert await reports.recovered_after(0) == (1, 3)
        assert await reports.recovered_after(3) == (0, 3)
        assert await reports.oldest_pending() == {"crm": START}
        jobs = await storage.claim("crm", 2, START + 10)
        for job in jobs:
            await storage.book(job.id, "dead", START + 20 + job.id, error=f"HTTP 400: #{job.id}")
        assert await reports.dead_since(START) == {"crm": (2, f"HTTP 400: #{jobs[-1].id}")}
        assert await reports.dead_since(START + 100) == {}
        assert sorted(await reports.dead_job_ids("crm")) == sorted(j.id for j in jobs)
    finally:
        await reports.close()
        await storage.close()


async def test_each_question_sees_what_was_committed_before_it(
    backend: str | None, tmp_path: Path
) -> None:
    # The reports have their own reader (on SQLite a read-only connection on its own thread):
    # while other pages are read, a question asked after a commit sees it, never an older
    # snapshot (a page runs to its end in one call there: no statement is left active).
    settings = StorageSettings(url=backend) if backend else StorageSettings(path=tmp_path / "r.db")
    storage = await open_storage(settings)
    reports = reports_for(storage)
    stop = asyncio.Event()

    async def other_pages() -> None:
        while not stop.is_set():
            await reports.overview([], START)
            await reports.live_calls(START)

    readers = [asyncio.create_task(other_pages()) for _ in range(2)]
    try:
        for i in range(50):
            stored, _ = await storage.append([ev(f"u{i}", "call_end")], {}, START + i)
            assert await reports.last_event_id() == stored[0].event_id
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await reports.close()
        await storage.close()
