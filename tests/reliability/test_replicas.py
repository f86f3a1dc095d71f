"""Three replicas on one PostgreSQL, kill -9 of a random one every few seconds: nothing lost.

A loopback stand-in for the load balancer sends webhooks round robin and, as a real one does
(onlinePBX itself never retries), tries the next replica when a connection is refused. A
random replica is killed with SIGKILL every ``REPLICA_KILL_EVERY`` seconds and restarted.
At the end:
- every acknowledged (200) event is in the fake CRM: **0 lost**;
- CRM writes made twice are counted (the ``http`` adapter's ``webhook-id`` makes them
  droppable by the receiver; a kill between the CRM's answer and the booking causes them);
- the fake CRM's rate limit (enforced and counted over every sliding second, across all
  replicas) was never exceeded: **0 over**;
- failover: after a kill of the replica delivering, another one delivers within one lease.

Size: ``PBX_BRIDGE_BIG=1`` (or ``PBX_BRIDGE_REPLICA_EVENTS`` / ``PBX_BRIDGE_REPLICA_KILLS``).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import time
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web

from bridge.samples import sample
from tests.reliability.fakes import HttpReceiver, Recorded
from tests.reliability.process import BridgeProcess, free_port, write_settings
from tests.reliability.sizes import _size
from tests.reliability.targets import HTTP_SECRET

TOKEN = "replica-harness-token-0123456789"
REPLICAS = 3
EVENTS = _size("REPLICA_EVENTS", 240, 3000)
KILLS = _size("REPLICA_KILLS", 4, 40)
KILL_EVERY = 2.5  # seconds between kills
LEASE = 3.0  # storage.lease_seconds: the failover bound for in-flight jobs
CRM_LIMIT = 20.0  # requests per second the fake CRM allows (and the adapter is set to)
WINDOW = 1.0
START_TIMEOUT = 90.0  # a loaded CI machine


@dataclass
class LimitedReceiver(HttpReceiver):
    """The http adapter's receiver with a vendor-style rate limit: more than ``allowed``
    requests in any ``WINDOW`` seconds get 429 (and are counted as over the limit)."""

    allowed: int = int(CRM_LIMIT * WINDOW) + 1  # evenly spaced: rate × window + 1 fit
    arrivals: list[float] = field(default_factory=list)
    over: int = 0

    def answer(self, seen: Recorded) -> Any:
        now = time.monotonic()
        self.arrivals.append(now)
        recent = len(self.arrivals) - bisect.bisect_left(self.arrivals, now - WINDOW)
        if recent > self.allowed:
            self.over += 1
            return web.json_response(
                {"error": "rate limited"}, status=429, headers={"Retry-After": "1"}
            )
        return {"ok": True}

    def delivered(self) -> Counter[str]:
        keys: Counter[str] = Counter()
        for seen in self.requests:
            if seen.body:
                doc = json.loads(seen.body)
                keys[doc["call"]["uuid"]] += 1
        return keys


def _settings(tmp: Path, port: int, url: str, crm: str) -> Path:
    return write_settings(
        tmp / f"settings-{port}.toml",
        {
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "webhook_token": TOKEN,
                "shutdown_grace_seconds": 0,
            },
            "storage": {"url": url, "lease_seconds": LEASE},
            "delivery": {"retry_base_seconds": 0.2, "retry_max_delay_seconds": 1},
            "log": {"level": "INFO", "format": "json"},
            "adapters.http": {
                "type": "http",
                "url": f"{crm}/hook",
                "secret": HTTP_SECRET,
                "rate_limit": CRM_LIMIT,
                "concurrency": 4,
            },
        },
    )


async def _send(replicas: list[BridgeProcess], n: int, pace: float) -> tuple[set[str], int]:
    """Round robin; a refused connection goes to the next replica. (acknowledged, failovers)"""
    acked: set[str] = set()
    retried = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(n):
            uuid = str(uuidlib.UUID(int=i + 1))
            body = sample("call_end", uuid=uuid)
            for attempt in range(3 * len(replicas) * 20):
                replica = replicas[(i + attempt) % len(replicas)]
                try:
                    resp = await client.post(
                        f"{replica.base_url}/webhooks/onlinepbx/{TOKEN}", data=body
                    )
                except httpx.TransportError:
                    retried += 1
                    if attempt % len(replicas) == len(replicas) - 1:
                        await asyncio.sleep(0.05)  # every replica refused: all restarting
                    continue
                if resp.status_code == 200:
                    acked.add(uuid)
                break
            await asyncio.sleep(pace)
    return acked, retried


async def _chaos(
    replicas: list[BridgeProcess], kills: int, rng: random.Random, log: list[float]
) -> list[float]:
    restarts = []
    for _ in range(kills):
        await asyncio.sleep(KILL_EVERY)
        victim = rng.choice(replicas)
        victim.kill()
        log.append(time.monotonic())
        await victim.wait()
        started = time.monotonic()
        await victim.start(timeout=START_TIMEOUT)
        restarts.append(time.monotonic() - started)
    return restarts


async def test_three_replicas_under_kill_9_lose_nothing(tmp_path: Path, postgres_url: str) -> None:
    crm = await LimitedReceiver(clock=time.time).start()
    replicas = []
    for _ in range(REPLICAS):
        port = free_port()
        replicas.append(
            BridgeProcess(
                _settings(tmp_path, port, postgres_url, crm.base_url), port, tmp_path / str(port)
            )
        )
    rng = random.Random(7)
    kills: list[float] = []
    try:
        for r in replicas:  # one at a time: three interpreters importing at once crawl
            await r.start(timeout=START_TIMEOUT)
        pace = KILL_EVERY * KILLS / EVENTS  # the stream lasts as long as the chaos
        (acked, retried), restarts = await asyncio.gather(
            _send(replicas, EVENTS, pace), _chaos(replicas, KILLS, rng, kills)
        )
        deadline = time.monotonic() + 60 + EVENTS / CRM_LIMIT
        while time.monotonic() < deadline:
            if acked <= set(crm.delivered()):
                break
            await asyncio.sleep(0.2)
        delivered = crm.delivered()
        lost = acked - set(delivered)
        twice = sum(n - 1 for n in delivered.values() if n > 1)
        gaps = _failover_gaps(kills, [a for a in crm.arrivals])
        conn = await asyncpg.connect(
            postgres_url.split("?")[0],
            server_settings={"search_path": postgres_url.rsplit("=", 1)[1]},
        )
        try:
            open_jobs = await conn.fetchval("SELECT COUNT(*) FROM jobs WHERE status != 'done'")
        finally:
            await conn.close()
        print(
            f"\nreplicas: {REPLICAS} on PostgreSQL, {len(kills)} kill -9, {EVENTS} sent,"
            f" {len(acked)} acknowledged, {retried} connections retried on another replica;"
            f" lost {len(lost)}, CRM writes twice {twice}, over the CRM limit {crm.over};"
            f" longest CRM silence after a kill {max(gaps, default=0):.2f} s (lease {LEASE} s);"
            f" restart {max(restarts, default=0):.2f} s max"
        )
        assert len(acked) >= EVENTS * 0.95  # the balancer found a live replica nearly always
        assert not lost, f"acknowledged but never delivered: {sorted(lost)[:5]}"
        assert crm.over == 0
        assert open_jobs == 0
        assert max(gaps, default=0) <= LEASE + 1.0  # + the lead retry
    finally:
        for r in replicas:
            await r.close()
        await crm.close()


def _failover_gaps(kills: list[float], arrivals: list[float]) -> list[float]:
    """For each kill while deliveries were flowing, the time to the next CRM request."""
    gaps = []
    for k in kills:
        i = bisect.bisect_right(arrivals, k)
        if 0 < i < len(arrivals) and k - arrivals[i - 1] < 0.5:  # deliveries were flowing
            gaps.append(arrivals[i] - k)
    return gaps
