"""PostgreSQL replicas: ingest against the bare aiohttp app, and delivery by three replicas at
a CRM's limit.

    python -m bench.replicas [--seconds 10] [--rounds 3] [--connections 32] [--calls 210]
        [--part all|ingest|delivery]

Needs a PostgreSQL server (``PBX_BRIDGE_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``); every bridge run gets a fresh schema, dropped
after. Ingest, each round: the bare app (parses the body, stores nothing), the bridge on
SQLite, the bridge on PostgreSQL (one replica), then two replicas on one PostgreSQL with the
load split between them (their throughputs added, the worse p99). Delivery: ``calls``
webhooks posted to replica A of three; the CRM (7 requests/s, sliding window, 429 above it)
is fed by whichever replica holds the adapter's lead; the rate counts the whole windows that
had a backlog, as ``bench.delivery`` does.
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
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from bench.common import FakeCRM, bridge_process, free_port, machine, webhook_url, write_settings
from bench.ingest import _bare, _median
from bench.load import Load, drive, generator

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
        "crm": {"type": "http", "url": crm + "/hook", "secret": "s" * 24, "rate_limit": rate}
    }
    storage = {"url": url} if url else {}
    work.mkdir(parents=True, exist_ok=True)
    return write_settings(work, port, adapters, storage=storage)


async def _replicas_ingest(
    n: int, seconds: float, connections: int, crm: str, url: str | None
) -> Load:
    with (
        tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        ports = [free_port() for _ in range(n)]
        for i, port in enumerate(ports):
            work = Path(tmp) / str(i)
            stack.enter_context(
                bridge_process(_config(work, port, crm, url, 7), port, work / "bridge.log")
            )
        each = max(1, connections // n)
        await asyncio.gather(*(drive(webhook_url(p), 2, each) for p in ports))
        loads = await asyncio.gather(*(drive(webhook_url(p), seconds, each) for p in ports))
    return Load(
        sum(x.requests for x in loads),
        sum(x.rps for x in loads),
        max(x.p50_ms for x in loads),
        max(x.p99_ms for x in loads),
        sum(x.errors for x in loads),
    )


async def ingest(server: str, seconds: float, rounds: int, connections: int) -> None:
    crm = FakeCRM()
    base = await crm.start()
    names = ("bare aiohttp", "bridge, SQLite", "bridge, PostgreSQL x1", "bridge, PostgreSQL x2")
    runs: dict[str, list[Load]] = {name: [] for name in names}
    try:
        for n in range(rounds):
            runs[names[0]].append(await _bare(seconds, connections))
            runs[names[1]].append(await _replicas_ingest(1, seconds, connections, base, None))
            for replicas, name in ((1, names[2]), (2, names[3])):
                async with fresh_schema(server) as url:
                    runs[name].append(
                        await _replicas_ingest(replicas, seconds, connections, base, url)
                    )
            for name, loads in runs.items():
                print(f"round {n + 1}  {name:24s} {loads[-1].row()}")
    finally:
        await crm.close()
    med = {name: _median(loads) for name, loads in runs.items()}
    bare = med[names[0]]
    print("\ningest medians")
    for name, load in med.items():
        print(
            f"  {name:24s} {load.row()}   throughput {load.rps / bare.rps:.2f}x  "
            f"p99 {load.p99_ms / bare.p99_ms:.2f}x"
        )


async def delivery(server: str, calls: int, latency: float, limit: int = 7) -> None:
    crm = FakeCRM(limit=limit, window=1.0, latency=latency)
    base = await crm.start()
    try:
        async with fresh_schema(server) as url:
            with (
                tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp,
                contextlib.ExitStack() as stack,
            ):
                ports = [free_port() for _ in range(3)]
                for i, port in enumerate(ports):
                    work = Path(tmp) / str(i)
                    config = _config(work, port, base, url, limit)
                    stack.enter_context(bridge_process(config, port, work / "bridge.log"))
                poster = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.delivery",
                    "--post",
                    webhook_url(ports[0]),
                    str(calls),
                )
                if await poster.wait():
                    raise RuntimeError("posting the burst failed")
                deadline = time.monotonic() + calls / limit * 2 + 30
                while len(crm.accepted) < calls and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
    finally:
        await crm.close()
    got = crm.accepted
    windows = max(1, int(got[-1] - got[0]))
    rate = sum(1 for t in got if t < got[0] + windows) / windows
    print(
        f"\ndelivery, 3 replicas on PostgreSQL, CRM limit {limit}/s,"
        f" latency {latency * 1000:.0f} ms:"
        f" delivered {len(got)}/{calls}, rate {rate:.2f}/s = {rate / limit:.3f}x the limit,"
        f" over the limit: {crm.rejected}"
    )


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("PBX_BRIDGE_TEST_POSTGRES", DEFAULT_PG)
    print(f"machine: {machine()}")
    print(f"load generator: {generator()}; PostgreSQL at {server}")
    print(f"{args.connections} connections, {args.seconds:g} s per run, {args.rounds} rounds\n")
    if args.part in ("all", "ingest"):
        await ingest(server, args.seconds, args.rounds, args.connections)
    if args.part in ("all", "delivery"):
        await delivery(server, args.calls, args.latency)
    print("\ntargets: delivery >= 0.95x the limit, 0 over it")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--calls", type=int, default=210)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--part", choices=("all", "ingest", "delivery"), default="all")
    asyncio.run(main(parser.parse_args()))
