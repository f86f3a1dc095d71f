"""Test helpers for adapter authors: run events through one adapter without a server.

    harness = await AdapterHarness.open(tmp_path, "amocrm", {"access_token": "…"})
    job = await harness.deliver(sample("call_end"))   # → the job after one attempt
    assert job.status == "done"

The real pipeline, worker bookkeeping and storage (a SQLite file, or the PostgreSQL named by
``storage={"url": …}``) are used; only the clock is yours,
the adapter's ``rate_limit`` defaults to 0 (unlimited) so tests never sleep, and
``contact_cache_seconds`` to 0 so each delivery exercises the adapter's own lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.adapter.contract import LIVE_ACTIONS, Adapter
from bridge.deliver.service import Delivery, job_planner
from bridge.deliver.worker import AdapterWorker
from bridge.metrics import Metrics
from bridge.registry import configured
from bridge.settings import Settings
from bridge.store import EventWriter, IncomingEvent, Job, Outbox, Storage, open_storage


class FakeClock:
    """A wall clock the test moves by hand (retry schedules without sleeping)."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def plain_schedule(schedule: dict[str, Any] | None) -> dict[str, Any]:
    """Tests compute due times from a fake or the wall clock: the default working hours would
    make them depend on the time of day, so they are off unless the test sets hours itself."""
    schedule = dict(schedule or {})
    if not {"working_hours", "work_days", "work_start", "work_end"} & set(schedule):
        schedule["working_hours"] = False
    return schedule


class AdapterHarness:
    def __init__(
        self, db: Storage, delivery: Delivery, writer: EventWriter, outbox: Outbox, name: str
    ) -> None:
        self.db = db
        self.delivery = delivery
        self.writer = writer
        self.outbox = outbox
        self.name = name
        self.metrics = Metrics()

    @property
    def worker(self) -> AdapterWorker:
        return self.delivery.workers[self.name]

    @property
    def adapter(self) -> Adapter:
        return self.worker.pipeline.adapter

    @classmethod
    async def open(
        cls,
        tmp_path: Path,
        name: str,
        table: dict[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> AdapterHarness:
        # Tests never wait on the CRM rate limit, and every delivery asks the CRM again
        # (no contact cache), unless they ask otherwise.
        table = {"rate_limit": 0, "contact_cache_seconds": 0, **table}
        settings["schedule"] = plain_schedule(settings.get("schedule"))
        settings.setdefault("storage", {"path": tmp_path / f"{name}.db"})
        s = Settings(adapters={name: table}, **settings)
        adapters = configured(s.adapters)  # a refused table: before anything is opened
        db = await open_storage(s.storage)
        try:
            delivery = Delivery.build(adapters, s, db, Metrics(), clock)
            try:
                for adapter in delivery.adapters:
                    await adapter.setup()
            except BaseException:
                await delivery.stop(0)
                raise
        except BaseException:
            # Nobody gets a harness to close: left open, the database's aiosqlite thread
            # outlived the test's event loop ("Event loop is closed" in a later test).
            await db.close()
            raise
        writer = EventWriter(db, job_planner(adapters), clock=clock)
        return cls(db, delivery, writer, Outbox(db, clock), name)

    async def store(self, payload: dict[str, str]) -> None:
        await self.writer.submit(
            IncomingEvent(payload.get("domain", ""), payload["uuid"], payload["event"], payload)
        )

    async def attempt(self) -> list[Job]:
        """Claim every due job of this adapter, run each once; return them as booked (in
        the order they ran). The jobs of one call are claimed one at a time, in order (see
        ``Storage.claim``), so this goes round by round until nothing new is claimable."""
        ran: list[int] = []
        while True:
            jobs = await self.outbox.claim(self.name, 1000)
            fresh = [job for job in jobs if job.id not in ran]
            for job in jobs:
                if job.id in ran:  # retried within this attempt: once is the contract
                    await self.outbox.release(job.id)
            for job in fresh:
                ran.append(job.id)
                await self.worker.process(job)
            if not fresh:
                break
        return [j for j in [await self.outbox.get(job_id) for job_id in ran] if j]

    async def deliver(self, payload: dict[str, str]) -> Job:
        """Store one event and run its job once; the job as booked afterwards. An end event
        of an adapter with the ``over`` live action causes two jobs: both run (``over``
        first), and the post-call one is returned."""
        await self.store(payload)
        jobs = await self.attempt()
        if len(jobs) > 1:
            jobs = [job for job in jobs if job.action not in LIVE_ACTIONS]
        assert len(jobs) == 1, f"expected one job, got {len(jobs)}"
        return jobs[0]

    async def close(self) -> None:
        await self.delivery.stop(0)
        await self.db.close()
