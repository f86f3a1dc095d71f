"""Target 4: CRM contact lookups per call, with and without the contact cache.

    python -m bench.lookups [--calls 1000] [--seed 7]

The real pipeline and worker bookkeeping (``bridge.testing.AdapterHarness``) run a mix of
inbound call_end events through a stand-in CRM adapter whose phone search is exact, as
amoCRM's and many others' are: it tries the number's forms one by one (E.164, digits,
national, last ten digits), one request each, until one matches, and creates the contact
when none does. The mix: calls 0.6 s apart (a busy hour), callers drawn from a pool with
a Zipf-like skew (a few regulars call often, most numbers once or twice); half of the pool
is already in the CRM, stored as bare digits. Lookups are counted per call for
``contact_cache_seconds = 0`` (ask every time) and the default 60.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path
from typing import Any

from bench.common import machine
from bench.exactsearch import ExactSearchCRM
from bridge import logs, registry
from bridge.registry import ENTRY_POINT_GROUP
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock, vendor_sample

POOL = 700


def mix(calls: int, seed: int) -> tuple[list[str], set[str]]:
    rng = random.Random(seed)
    pool = [f"79{rng.randrange(10**8, 10**9)}" for _ in range(POOL)]
    weights = [1 / (rank + 1) ** 1.1 for rank in range(POOL)]
    callers = rng.choices(pool, weights, k=calls)
    known = set(rng.sample(pool, POOL // 2))
    return callers, known


async def run(calls: int, seed: int, ttl: float) -> dict[str, float]:
    callers, known = mix(calls, seed)
    ExactSearchCRM.store = {number: f"k{i}" for i, number in enumerate(known)}
    ExactSearchCRM.lookups = 0
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="bench-lookups-") as tmp:
        harness = await AdapterHarness.open(
            Path(tmp), "crm", {"type": "exactsearch", "contact_cache_seconds": ttl}, clock=clock
        )
        try:
            for i, number in enumerate(callers):
                payload: dict[str, Any] = vendor_sample("call_end")
                payload.update(uuid=f"u{i}", direction="inbound", caller=number, callee="145")
                job = await harness.deliver(payload)
                assert job.status == "done", job.last_error
                clock.advance(0.6)
        finally:
            await harness.close()
    return {
        "lookups": ExactSearchCRM.lookups,
        "per_call": ExactSearchCRM.lookups / calls,
        "distinct": len(set(callers)),
    }


async def main(calls: int, seed: int) -> None:
    print(f"machine: {machine()}")
    logs.configure("WARNING", "json")
    # Registered like a third-party adapter (an entry point), for this run only.
    from importlib.metadata import EntryPoint

    plugin = EntryPoint("exactsearch", "bench.exactsearch:ExactSearchCRM", ENTRY_POINT_GROUP)
    real = registry.entry_points
    registry.entry_points = lambda group: [*real(group=group), plugin]
    for ttl in (0.0, 60.0):
        r = await run(calls, seed, ttl)
        print(
            f"contact_cache_seconds = {ttl:4g}: {r['lookups']:5.0f} lookups for {calls} calls"
            f" from {r['distinct']:.0f} numbers = {r['per_call']:.2f} per call"
        )
    print("target: <= 1.2 lookups per call with the cache")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.seed))
