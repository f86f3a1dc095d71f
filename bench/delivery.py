"""Target 2: a backlog delivered at the CRM's limit, never over it.

    python -m bench.delivery [--calls 210] [--latency 0.1]

A fake CRM on loopback enforces its limit over a sliding window (the strictest reading),
answers 429 above it and adds ``latency`` to every answer. The bridge (``http`` adapter,
default concurrency) is sent a burst of ``calls`` call_end webhooks, which become a backlog
it drains. Two limits: amoCRM-style 7 requests/s, and a burst window of 100 per 10 s; each
with the adapter's limiter evenly spacing requests (``rate_window`` unset) and window-aware
(``rate_window`` set). The delivered rate counts what the CRM accepted in the whole windows
that had a backlog waiting (from the first arrival, k × window seconds, k as large as the
run allows), divided by k × window: exactly the limit for a perfect client.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
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
    webhook_url,
    write_settings,
)

LIMITS = {"amoCRM-style 7/s": (7, 1.0), "burst window 100/10 s": (100, 10.0)}


async def post_burst(url: str, calls: int) -> None:
    body = call_end_form()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:

        async def one(i: int) -> None:
            data = re.sub(r"uuid=[^&]*", f"uuid=d{time.time_ns()}-{i}", body)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            async with session.post(url, data=data, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

        await asyncio.gather(*(one(i) for i in range(calls)))


async def run(
    limit: int, window: float, latency: float, calls: int, window_aware: bool
) -> dict[str, float]:
    crm = FakeCRM(limit=limit, window=window, latency=latency)
    base = await crm.start()
    rate = limit / window
    table = {"type": "http", "url": base + "/hook", "secret": "s" * 24, "rate_limit": rate}
    if window_aware:
        table["rate_window"] = window
    port = free_port()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
            config = write_settings(Path(tmp), port, {"crm": table})
            with bridge_process(config, port, Path(tmp) / "bridge.log"):
                # From another process: the fake CRM's loop must stamp arrivals on time.
                poster = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.delivery", "--post", webhook_url(port), str(calls)
                )
                if await poster.wait():
                    raise RuntimeError("posting the burst failed")
                deadline = time.monotonic() + calls / rate * 2 + 30
                while len(crm.accepted) < calls and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
    finally:
        await crm.close()
    got = crm.accepted
    windows = max(1, int((got[-1] - got[0]) // window))
    delivered = sum(1 for t in got if t < got[0] + windows * window) / (windows * window)
    return {
        "accepted": len(got),
        "over": crm.rejected,
        "rate": delivered,
        "ratio": delivered / rate,
    }


async def main(calls: int, latency: float) -> None:
    print(f"machine: {machine()}")
    print(
        f"{calls} call_end webhooks per run (burst window: {calls * 2 + 30}),"
        f" CRM latency {latency * 1000:.0f} ms\n"
    )
    for name, (limit, window) in LIMITS.items():
        n = calls if window <= 1 else calls * 2 + 30
        for aware in (False, True):
            r = await run(limit, window, latency, n, aware)
            how = f"rate_window = {window:g}" if aware else "evenly spaced"
            print(
                f"{name:22s} {how:18s} delivered {r['accepted']:4.0f}/{n}  "
                f"rate {r['rate']:6.2f}/s = {r['ratio']:.3f}x the limit"
                f"  over the limit: {r['over']:.0f}"
            )
    print("\ntarget: >= 0.95x the limit, 0 over it")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=210)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--post", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.post:
        asyncio.run(post_burst(args.post[0], int(args.post[1])))
    else:
        asyncio.run(main(args.calls, args.latency))
