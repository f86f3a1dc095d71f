"""The contact cache: repeat callers cost one CRM lookup per TTL, a created contact is
reused at once, and concurrent jobs for one number never create it twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.testing import AdapterHarness
from tests.conftest import FakeClock, vendor_sample


def inbound(uuid: str, client: str = "79502222919") -> dict[str, str]:
    payload = vendor_sample("call_end")
    payload.update(uuid=uuid, direction="inbound", caller=client, callee="145")
    return payload


class Counting:
    """Wraps an adapter's find/create and counts the lookups the pipeline asks for."""

    def __init__(self, adapter: Any) -> None:
        self.finds = self.creates = 0
        self._creating = False
        find, create = adapter.find_contact, adapter.create_contact

        async def counted_find(phone: Any) -> Any:
            self.finds += not self._creating  # the local adapter re-reads what it created
            await asyncio.sleep(0)  # a real lookup yields: let concurrent jobs interleave
            return await find(phone)

        async def counted_create(*args: Any) -> Any:
            self.creates += 1
            self._creating = True
            try:
                return await create(*args)
            finally:
                self._creating = False

        adapter.find_contact, adapter.create_contact = counted_find, counted_create


@pytest.fixture
async def open_harness(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[AdapterHarness] = []

    async def open_(clock: FakeClock, **table: Any) -> tuple[AdapterHarness, Counting]:
        table = {"contact_cache_seconds": 60, **table}  # the default the bridge runs with
        harness = await AdapterHarness.open(tmp_path, "local", table, clock=clock)
        opened.append(harness)
        return harness, Counting(harness.adapter)

    yield open_
    for h in opened:
        await h.close()


async def test_repeat_callers_are_looked_up_once_per_ttl(open_harness: Any) -> None:
    clock = FakeClock()
    harness, crm = await open_harness(clock, contact_cache_seconds=60)
    for i in range(3):
        assert (await harness.deliver(inbound(f"a{i}"))).status == "done"
    assert (crm.finds, crm.creates) == (1, 1)  # found nothing, created, then reused
    clock.advance(61)
    assert (await harness.deliver(inbound("a3"))).status == "done"
    assert (crm.finds, crm.creates) == (2, 1)  # expired: asked again, found the contact


async def test_a_ttl_of_zero_asks_every_time(open_harness: Any) -> None:
    harness, crm = await open_harness(FakeClock(), contact_cache_seconds=0)
    for i in range(3):
        await harness.deliver(inbound(f"b{i}"))
    assert (crm.finds, crm.creates) == (3, 1)


async def test_an_absent_contact_is_cached_too(open_harness: Any) -> None:
    harness, crm = await open_harness(FakeClock(), create_contacts="never")
    for i in range(3):
        await harness.deliver(inbound(f"c{i}"))
    assert (crm.finds, crm.creates) == (1, 0)


async def test_concurrent_jobs_for_one_new_number_create_one_contact(open_harness: Any) -> None:
    # post-call only: one claim takes every call's log_call at once (an `over` would be
    # each call's first job, and the claim gives a call's jobs one at a time)
    post_call = ["log_call", "create_task"]
    harness, crm = await open_harness(FakeClock(), concurrency=8, events=post_call)
    for i in range(5):
        await harness.store(inbound(f"d{i}"))
    jobs = await harness.outbox.claim("local", 10)
    await asyncio.gather(*(harness.worker.process(job) for job in jobs))
    assert (crm.finds, crm.creates) == (1, 1)
    statuses = {(await harness.outbox.get(j.id)).status for j in jobs}  # type: ignore[union-attr]
    assert statuses == {"done"}
