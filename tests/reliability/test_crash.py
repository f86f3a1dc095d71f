"""kill -9 the real bridge at random moments under a stream of webhooks; nothing is lost.

Kills land in three kinds of moment: on a timer while events arrive (ingest), from inside a
fake CRM right after it recorded a write and before it answers (between the CRM call and the
bookkeeping), and while the CRM is failing so jobs are being retried. The bridge is restarted
after each kill; at the end the outbox must drain and every acknowledged event be in every
CRM (or dead with a reason), every refused one nowhere.

Size: ``PBX_BRIDGE_BIG=1`` (or ``PBX_BRIDGE_CRASH_KILLS`` / ``PBX_BRIDGE_CRASH_EVENTS``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bridge.fakecrm import TEMPLATES
from bridge.samples import sample
from tests.reliability.fakes import HTTP_500, FakeCRM, HttpReceiver
from tests.reliability.process import BridgeProcess, free_port, query, write_settings
from tests.reliability.sizes import BIG, CRASH_EVENTS, CRASH_KILLS, CRASH_SEED
from tests.reliability.targets import CRM

TOKEN = "crash-harness-token-0123456789"
PBX, GUESSER = "198.51.100.7", "203.0.113.9"
RESENDS = 400  # × 50 ms: longer than any restart
KIND = {"call_end": "call.logged", "call_missed": "task.created"}
# CI keeps to one real-CRM adapter beside `http` (each adds its requests to every kill);
# PBX_BRIDGE_BIG=1 runs all of them at once.
TARGETS = CRM if BIG else [t for t in CRM if t.name in ("http", "amocrm")]
LOCAL_TABLE = {"call_end": "local_calls", "call_missed": "local_tasks"}


@dataclass
class Sent:
    uuid: str
    event: str
    domain: str
    outcome: str  # "200", another status code, "refused" (never connected), "unknown"
    resends: int = 0


@dataclass
class Chaos:
    bridge: BridgeProcess
    fakes: dict[str, FakeCRM]
    rng: random.Random
    kills: Counter[str] = field(default_factory=Counter)
    armed: bool = False
    restart_seconds: list[float] = field(default_factory=list)

    def on_crm_request(self, _seen: Any) -> None:
        if self.armed:  # the CRM has the write; the bridge dies before it can book it
            self.armed = False
            self.bridge.kill()

    async def run(self, total: int) -> None:
        modes = ("ingest", "after_crm_call", "during_retries")
        for n in range(total):
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            mode = modes[n % len(modes)]
            if mode == "after_crm_call":
                self.armed = True
                for _ in range(50):
                    if not self.armed:
                        break
                    await asyncio.sleep(0.01)
                self.armed = False
            elif mode == "during_retries":
                for fake in self.fakes.values():
                    fake.play(HTTP_500, self.rng.randint(3, 30))
                await asyncio.sleep(self.rng.uniform(0.02, 0.3))
            self.bridge.kill()  # no-op if the CRM already did
            await self.bridge.wait()
            self.kills[mode] += 1
            t = time.monotonic()
            await self.bridge.start()
            self.restart_seconds.append(time.monotonic() - t)


def _body(i: int, rng: random.Random) -> tuple[str, str, dict[str, str], str]:
    """(token, event, form body, expected) for the i-th event of the stream."""
    event = rng.choice(("call_end", "call_missed"))
    body = sample(event, uuid=f"crash-{i:06d}", now=time.time())
    roll = rng.random()
    if roll < 0.05:
        return "crash-harness-token-WRONG-000000", event, body, "404"
    if roll < 0.10:
        body["call_duration"] = "not-a-number"
        return TOKEN, event, body, "422"
    return TOKEN, event, body, "200"


async def _send_stream(base: str, total: int, pace: float, rng: random.Random) -> list[Sent]:
    sent: list[Sent] = []
    gate = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        token, event, body, _ = _body(i, rng)
        outcome, retries = "refused", 0
        async with gate:
            # Like a sender that retries until it gets an answer: a refused connection never
            # reached the bridge; a dropped one may have been stored (the repeat is a dup).
            for retries in range(RESENDS):  # noqa: B007 (the count is reported)
                try:
                    r = await client.post(
                        f"{base}/webhooks/onlinepbx/{token}",
                        data=body,
                        headers={"X-Forwarded-For": PBX if token == TOKEN else GUESSER},
                    )
                except httpx.ConnectError:
                    pass
                except httpx.TransportError:
                    outcome = "unknown"
                else:
                    outcome = str(r.status_code)
                    break
                await asyncio.sleep(0.05)
        sent.append(Sent(body["uuid"], event, body["domain"], outcome, retries))

    async with httpx.AsyncClient(timeout=10) as client:
        tasks = []
        for i in range(total):
            tasks.append(asyncio.create_task(one(client, i)))
            await asyncio.sleep(pace)
        await asyncio.gather(*tasks)
    return sent


async def _drain(db: Path, bridge: BridgeProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = query(db, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')")
        if left[0][0] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox did not drain: {left}\n{bridge.log()[-3000:]}")
        await asyncio.sleep(0.1)


def _settings(tmp: Path, port: int, fakes: dict[str, FakeCRM]) -> Path:
    tables: dict[str, dict[str, Any]] = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "webhook_token": TOKEN,
            "shutdown_grace_seconds": 0,
            # Senders are told apart by X-Forwarded-For, so the guesser's throttle (wrong
            # tokens) does not also block the PBX, as on a real network.
            "trusted_proxies": ["127.0.0.1/32"],
        },
        # Short leases: a killed run's in-flight jobs are taken again 2 s after the restart.
        "storage": {"path": str(tmp / "bridge.db"), "lease_seconds": 2},
        "delivery": {
            "retry_base_seconds": 0.05,
            "retry_max_delay_seconds": 0.5,
            "retry_max_age_hours": 1,
        },
        "log": {"level": "INFO", "format": "json"},
        "schedule": {"templates": TEMPLATES},  # notes name the call: see bridge.fakecrm
        "adapters.local": {},
    }
    for target in TARGETS:
        tables[f"adapters.{target.name}"] = target.table(fakes[target.name].base_url)
    return write_settings(tmp / "settings.toml", tables)


async def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(CRASH_SEED)
    fakes = {t.name: await t.fake(time.time).start() for t in TARGETS}
    port = free_port()
    bridge = BridgeProcess(_settings(tmp_path, port, fakes), port, tmp_path)
    chaos = Chaos(bridge, fakes, rng)
    for fake in fakes.values():
        fake.on_request = chaos.on_crm_request
    db = tmp_path / "bridge.db"
    started = time.monotonic()
    try:
        await bridge.start()
        pace = 0.9 * CRASH_KILLS / CRASH_EVENTS
        sent, _ = await asyncio.gather(
            _send_stream(bridge.base_url, CRASH_EVENTS, pace, random.Random(CRASH_SEED + 1)),
            chaos.run(CRASH_KILLS),
        )
        chaos_done = time.monotonic()
        for fake in fakes.values():
            fake.on_request = None
        # Every CRM adds its jobs (2-3 requests each) to what must drain after the chaos.
        await _drain(db, bridge, timeout=120.0 + 0.03 * CRASH_EVENTS * len(TARGETS))
        assert await bridge.stop() == 0
    finally:
        await bridge.close()
        for fake in fakes.values():
            await fake.close()
    report = _verify(db, sent, fakes)
    report.update(kills=dict(chaos.kills), starts=bridge.starts)
    report["restart_seconds_max"] = round(max(chaos.restart_seconds), 2)
    report["restart_seconds_mean"] = round(sum(chaos.restart_seconds) / CRASH_KILLS, 2)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["chaos_seconds"] = round(chaos_done - started, 1)
    print("\nCRASH HARNESS " + json.dumps(report, sort_keys=True))


def _verify(db: Path, sent: list[Sent], fakes: dict[str, FakeCRM]) -> dict[str, Any]:
    stored = {r[0] for r in query(db, "SELECT uuid FROM events")}
    jobs = {
        (r[0], r[1]): (r[2], r[3])
        for r in query(
            db,
            "SELECT e.uuid, j.adapter, j.status, j.last_error FROM jobs j"
            " JOIN events e ON e.id = j.event_id"
            " WHERE j.action NOT IN ('ringing', 'answered', 'over')",  # the post-call job
        )
    }
    # An adapter's live jobs (its `over` of call_end / call_missed) never end dead.
    live_dead = query(
        db,
        "SELECT COUNT(*) FROM jobs"
        " WHERE status = 'dead' AND action IN ('ringing', 'answered', 'over')",
    )
    assert live_dead[0][0] == 0, "a live job went dead"
    local = Counter(
        r[0] for table in LOCAL_TABLE.values() for r in query(db, f"SELECT uuid FROM {table}")
    )
    outcomes = Counter(s.outcome for s in sent)
    acked = [s for s in sent if s.outcome == "200"]
    refused = [s for s in sent if s.outcome not in ("200", "unknown")]
    assert len(acked) > len(sent) / 2, outcomes

    dead = []
    for s in acked:
        assert s.uuid in stored, f"acknowledged but not stored: {s}"
        for adapter in ["local", *fakes]:
            status, error = jobs[(s.uuid, adapter)]
            assert status in ("done", "dead"), (s, adapter, status)
            if status == "dead":
                assert error, f"dead without a reason: {s} {adapter}"
                dead.append((adapter, error))
        if jobs[(s.uuid, "local")][0] == "done":
            assert local[s.uuid] == 1, f"local rows for {s}: {local[s.uuid]}"
    for s in refused:
        assert s.uuid not in stored and s.uuid not in local, f"refused yet stored: {s}"

    crm: dict[str, Any] = {}
    for name, fake in fakes.items():
        got = fake.delivered()
        for s in acked:
            if jobs[(s.uuid, name)][0] == "done":
                assert got[f"{s.domain}/{s.uuid}/{KIND[s.event]}"] >= 1, f"{name} lacks {s}"
        for s in refused:
            assert not any(s.uuid in key for key in got), f"{name} got refused {s}"
        resent = sum(n - 1 for n in got.values() if n > 1)
        crm[name] = {"writes": sum(got.values()), "calls": len(got), "repeated_writes": resent}
        crm[name]["crm_drops_repeats"] = next(t.idempotent for t in CRM if t.name == name)
        if isinstance(fake, HttpReceiver):
            # A repeat always carries the same idempotency key, so the receiver can drop it.
            ids = fake.idempotency_keys()
            assert len(ids) == len(got), "a call was sent under two different webhook-ids"
    unknown = [s for s in sent if s.outcome == "unknown"]
    return {
        "events_sent": len(sent),
        "resends": sum(s.resends for s in sent),
        "outcomes": dict(outcomes),
        "unknown_then_stored": sum(s.uuid in stored for s in unknown),
        "dead": len(dead),
        "dead_reasons": sorted({e[:80] for _, e in dead})[:5],
        "crm": crm,
        "local_duplicates": sum(n - 1 for n in local.values() if n > 1),
    }
