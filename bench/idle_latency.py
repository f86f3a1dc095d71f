"""Target 3: from the webhook's 200 to the first CRM request, when the bridge is idle.

    python -m bench.idle_latency [--calls 100] [--gap 0.2]

One call_end at a time, ``gap`` seconds apart (the bridge is idle in between), to a bridge
with an ``http`` adapter whose loopback CRM answers at once. The clock is this process's
``time.monotonic()`` for both the 200 and the CRM's arrival. The worker is woken by the
insert, so the figure is the commit-to-request path, not a polling interval.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import (
    FakeCRM,
    bridge_process,
    call_end_form,
    free_port,
    machine,
    percentile,
    webhook_url,
    write_settings,
)


async def main(calls: int, gap: float) -> None:
    print(f"machine: {machine()}")
    crm = FakeCRM()
    base = await crm.start()
    port = free_port()
    acked: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
            table = {"type": "http", "url": base + "/hook", "secret": "s" * 24}
            config = write_settings(Path(tmp), port, {"crm": table})
            with bridge_process(config, port, Path(tmp) / "bridge.log"):
                async with aiohttp.ClientSession() as session:
                    for i in range(calls + 1):
                        uuid = f"idle-{time.time_ns()}-{i}"
                        body = re.sub(r"uuid=[^&]*", f"uuid={uuid}", call_end_form())
                        async with session.post(
                            webhook_url(port),
                            data=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                        ) as resp:
                            assert resp.status == 200
                        if i:  # the first call warms up the CRM client
                            acked[uuid] = time.monotonic()
                        await asyncio.sleep(gap)
    finally:
        await crm.close()
    waits = [(crm.first_seen[u] - t) * 1000 for u, t in acked.items() if u in crm.first_seen]
    print(f"{len(waits)}/{calls} calls reached the CRM; 200 → first CRM request:")
    print(
        f"  p50 {percentile(waits, 50):.1f} ms  p90 {percentile(waits, 90):.1f} ms"
        f"  p99 {percentile(waits, 99):.1f} ms  max {max(waits):.1f} ms"
    )
    print("target: p50 <= 50 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.gap))
