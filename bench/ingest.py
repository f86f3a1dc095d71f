"""Target 1: ingest throughput and p99 of the bridge (every 200 fsync'd) against a bare
aiohttp app that parses the same body and stores nothing, under the same load generator.

    python -m bench.ingest [--seconds 10] [--rounds 3] [--connections 32]

Each round runs the bare app, then the bridge (fresh database, an ``http`` adapter to a
loopback CRM limited to 7 requests/s, INFO logs to a file as in production), then the bridge
with ``log.level = "WARNING"`` to show what one log line per webhook costs. Medians of the
rounds are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import (
    FakeCRM,
    bridge_process,
    child,
    free_port,
    machine,
    webhook_url,
    write_settings,
)
from bench.load import Load, drive, generator, warm_up


async def _bare(seconds: float, connections: int) -> Load:
    port = free_port()
    with child([sys.executable, "-m", "bench.bare", str(port)], port):
        await warm_up(webhook_url(port), connections)
        return await drive(webhook_url(port), seconds, connections)


async def _bridge(seconds: float, connections: int, crm: str, level: str) -> Load:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        adapters = {
            "crm": {"type": "http", "url": crm + "/hook", "secret": "s" * 24, "rate_limit": 7}
        }
        config = write_settings(work, port, adapters, log_level=level)
        with bridge_process(config, port, work / "bridge.log"):
            await warm_up(webhook_url(port), connections)
            return await drive(webhook_url(port), seconds, connections)


def _median(loads: list[Load]) -> Load:
    return Load(
        int(statistics.median(x.requests for x in loads)),
        statistics.median(x.rps for x in loads),
        statistics.median(x.p50_ms for x in loads),
        statistics.median(x.p99_ms for x in loads),
        sum(x.errors for x in loads),
    )


async def main(seconds: float, rounds: int, connections: int) -> None:
    print(f"machine: {machine()}")
    gen = generator()
    print(
        f"load generator: {gen}"
        + ("" if gen == "wrk" else " (wrk is missing: apt-get install wrk)")
    )
    print(f"{connections} connections, {seconds:g} s per run, {rounds} rounds\n")
    crm = FakeCRM()
    base = await crm.start()
    runs: dict[str, list[Load]] = {"bare aiohttp": [], "bridge": [], "bridge, WARNING logs": []}
    try:
        for n in range(rounds):
            runs["bare aiohttp"].append(await _bare(seconds, connections))
            runs["bridge"].append(await _bridge(seconds, connections, base, "INFO"))
            runs["bridge, WARNING logs"].append(
                await _bridge(seconds, connections, base, "WARNING")
            )
            for name, loads in runs.items():
                print(f"round {n + 1}  {name:22s} {loads[-1].row()}")
    finally:
        await crm.close()
    med = {name: _median(loads) for name, loads in runs.items()}
    bare = med["bare aiohttp"]
    print("\nmedians")
    for name, load in med.items():
        print(
            f"  {name:22s} {load.row()}   throughput {load.rps / bare.rps:.2f}x  "
            f"p99 {load.p99_ms / bare.p99_ms:.2f}x"
        )
    print("targets: throughput >= 0.60x, p99 <= 3x the bare app's")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.connections))
