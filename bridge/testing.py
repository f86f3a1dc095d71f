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

from bridge.adapter.contract import Adapter
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
        s = Settings(adapters={name: table}, storage={"path": tmp_path / f"{name}.db"}, **settings)
        db = await open_storage(s.storage)
        adapters = configured(s.adapters)
        delivery = Delivery.build(adapters, s, db, Metrics(), clock)
        for adapter in delivery.adapters:
            await adapter.setup()
        writer = EventWriter(db, job_planner(adapters), clock=clock)
        return cls(db, delivery, writer, Outbox(db, clock), name)

    async def store(self, payload: dict[str, str]) -> None:
        await self.writer.submit(
            IncomingEvent(payload.get("domain", ""), payload["uuid"], payload["event"], payload)
        )

    async def attempt(self) -> list[Job]:
        """Claim every due job of this adapter, run each once; return them as booked."""
        jobs = await self.outbox.claim(self.name, 1000)
        for job in jobs:
            await self.worker.process(job)
        return [j for j in [await self.outbox.get(job.id) for job in jobs] if j]

    async def deliver(self, payload: dict[str, str]) -> Job:
        """Store one event and run its job once; the job as booked afterwards."""
        await self.store(payload)
        jobs = await self.attempt()
        assert len(jobs) == 1, f"expected one job, got {len(jobs)}"
        return jobs[0]

    async def close(self) -> None:
        await self.delivery.stop(0)
        await self.db.close()
