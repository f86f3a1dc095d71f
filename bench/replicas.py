"""PostgreSQL replicas: ingest against the bare aiohttp app, and delivery by three replicas at
a CRM's limit.

    python -m bench.replicas [--seconds 10] [--rounds 3] [--connections 32] [--calls 210]
        [--part all|ingest|delivery]

Needs a PostgreSQL server (``PBX_BRIDGE_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); every bridge run gets a fresh schema, dropped
after. Ingest, each round: the bare app (parses the body, stores nothing), two bare apps
behind the loopback round-robin balancer (``bench.balancer``: what the balancer itself
costs), the bridge on SQLite, the bridge on PostgreSQL (one replica, direct), then two
replicas on one PostgreSQL behind the balancer. Delivery: ``calls`` webhooks posted through
the balancer to three replicas; the CRM (7 requests/s, sliding window, 429 above it) is fed by
whichever replica holds the adapter's lead; the rate counts the whole windows that had a
backlog, as ``bench.delivery`` does.

Bridges are started one after another, each awaited on its ``/readyz`` for a time that grows
with the machine's load (``bench.common.start_timeout``; ``PBX_BRIDGE_BENCH_START_TIMEOUT``
overrides it). Every figure is printed with the load average at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg

from bench.common import (
    FakeCRM,
    bridge_process,
    child,
    free_port,
    load_average,
    machine,
    webhook_url,
    write_settings,
)
from bench.ingest import _bare, _median
from bench.load import Load, drive, generator, warm_up

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def fresh_schema(server: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(server)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{server}{'&' if '?' in server else '?'}search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


def _config(work: Path, port: int, crm: str, url: str | None, rate: float) -> Path:
    adapters = {
        "crm": {
            "type": "http",
            "url": crm + "/hook",
            "secret": "s" * 24,
            "rate_limit": rate,
            "rate_window": 1,  # window-aware limiter: the CRM counts a sliding second
        }
    }
    storage = {"url": url} if url else {}
    work.mkdir(parents=True, exist_ok=True)
    return write_settings(work, port, adapters, storage=storage)


@contextlib.contextmanager
def _balanced(upstreams: list[int]) -> Iterator[int]:
    """The loopback round-robin balancer (``bench.balancer``) in front of ``upstreams``."""
    port = free_port()
    args = [sys.executable, "-m", "bench.balancer", str(port), *map(str, upstreams)]
    with child(args, port):
        yield port


@contextlib.contextmanager
def _bridges(tmp: Path, n: int, crm: str, url: str | None, rate: float = 7) -> Iterator[list[int]]:
    """``n`` bridges started one after another (each waits for its ``/readyz``): started
    together, n interpreters importing at once on 2 loaded cores each took n times longer."""
    with contextlib.ExitStack() as stack:
        ports = []
        for i in range(n):
            port = free_port()
            work = tmp / str(i)
            config = _config(work, port, crm, url, rate)
            stack.enter_context(bridge_process(config, port, work / "bridge.log"))
            ports.append(port)
        yield ports


async def _measure(port: int, seconds: float, connections: int) -> Load:
    await warm_up(webhook_url(port), connections)
    return await drive(webhook_url(port), seconds, connections)


async def _bare_balanced(seconds: float, connections: int) -> Load:
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(child([sys.executable, "-m", "bench.bare", str(port)], port))
        with _balanced(ports) as front:
            return await _measure(front, seconds, connections)


async def _bridge_ingest(
    n: int, seconds: float, connections: int, crm: str, url: str | None
) -> Load:
    with (
        tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp,
        _bridges(Path(tmp), n, crm, url) as ports,
    ):
        if n == 1:
            return await _measure(ports[0], seconds, connections)
        with _balanced(ports) as front:
            return await _measure(front, seconds, connections)


NAMES = (
    "bare aiohttp",
    "bare aiohttp x2, balancer",
    "bridge, SQLite",
    "bridge, PostgreSQL x1",
    "bridge, PostgreSQL x2, balancer",
)


async def ingest(server: str, seconds: float, rounds: int, connections: int) -> None:
    crm = FakeCRM()
    base = await crm.start()
    runs: dict[str, list[Load]] = {name: [] for name in NAMES}
    try:
        for n in range(rounds):
            print(f"round {n + 1}: {load_average()}")
            runs[NAMES[0]].append(await _bare(seconds, connections))
            runs[NAMES[1]].append(await _bare_balanced(seconds, connections))
            runs[NAMES[2]].append(await _bridge_ingest(1, seconds, connections, base, None))
            for replicas, name in ((1, NAMES[3]), (2, NAMES[4])):
                async with fresh_schema(server) as url:
                    runs[name].append(
                        await _bridge_ingest(replicas, seconds, connections, base, url)
                    )
            for name, loads in runs.items():
                print(f"round {n + 1}  {name:32s} {loads[-1].row()}")
    finally:
        await crm.close()
    med = {name: _median(loads) for name, loads in runs.items()}
    bare, bare_lb = med[NAMES[0]], med[NAMES[1]]
    print(f"\ningest medians ({load_average()})")
    for name, load in med.items():
        print(
            f"  {name:32s} {load.row()}   throughput {load.rps / bare.rps:.2f}x  "
            f"p99 {load.p99_ms / bare.p99_ms:.2f}x"
        )
    x2 = med[NAMES[4]]
    print(
        f"  two replicas against the bare app behind the same balancer: throughput"
        f" {x2.rps / bare_lb.rps:.2f}x, p99 {x2.p99_ms / bare_lb.p99_ms:.2f}x"
    )


async def delivery(server: str, calls: int, latency: float, limit: int = 7) -> None:
    crm = FakeCRM(limit=limit, window=1.0, latency=latency)
    base = await crm.start()
    print(f"\ndelivery: {load_average()}")
    try:
        async with fresh_schema(server) as url:
            with (
                tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp,
                _bridges(Path(tmp), 3, base, url, rate=limit) as ports,
                _balanced(ports) as front,
            ):
                # From another process (the fake CRM's loop must stamp arrivals on time),
                # through the balancer: every replica ingests a share of the burst.
                poster = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.delivery", "--post", webhook_url(front), str(calls)
                )
                if await poster.wait():
                    raise RuntimeError("posting the burst failed")
                deadline = time.monotonic() + calls / limit * 2 + 30
                while len(crm.accepted) < calls and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
    finally:
        await crm.close()
    got = crm.accepted
    if len(got) < 2:
        raise RuntimeError(f"the CRM received {len(got)} of {calls} calls: nothing to rate")
    windows = max(1, int(got[-1] - got[0]))
    rate = sum(1 for t in got if t < got[0] + windows) / windows
    print(
        f"delivery, 3 replicas on PostgreSQL, CRM limit {limit}/s,"
        f" latency {latency * 1000:.0f} ms:"
        f" delivered {len(got)}/{calls}, rate {rate:.2f}/s = {rate / limit:.3f}x the limit,"
        f" over the limit: {crm.rejected} ({load_average()})"
    )


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("PBX_BRIDGE_TEST_POSTGRES", DEFAULT_PG)
    print(f"machine: {machine()}")
    print(f"load generator: {generator()}; PostgreSQL at {server}")
    print(f"{args.connections} connections, {args.seconds:g} s per run, {args.rounds} rounds")
    print(f"{load_average()}\n")
    if args.part in ("all", "ingest"):
        await ingest(server, args.seconds, args.rounds, args.connections)
    if args.part in ("all", "delivery"):
        await delivery(server, args.calls, args.latency)
    print(f"\ntargets: delivery >= 0.95x the limit, 0 over it; {load_average()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--calls", type=int, default=210)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--part", choices=("all", "ingest", "delivery"), default="all")
    asyncio.run(main(parser.parse_args()))
