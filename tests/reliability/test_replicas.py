"""Three replicas on one PostgreSQL, kill -9 of a random one every few seconds: nothing lost.

A loopback stand-in for the load balancer sends webhooks round robin and, as a real one does
(onlinePBX itself never retries), tries the next replica when a connection is refused. A
random replica is killed with SIGKILL every ``KILL_EVERY`` seconds and restarted. Two CRMs
are delivered at once: ``http`` (its ``webhook-id`` is an idempotency key) and Pipedrive (no
idempotency key: a repeated write is a second call log), each behind a fake that enforces
``CRM_LIMIT`` requests over every sliding second across all replicas. At the end:
- every acknowledged (200) event is in both CRMs: **0 lost**, no job left open;
- CRM writes made twice are counted per CRM; on ``http`` every repeat carries the first
  write's ``webhook-id`` (droppable by the receiver), so only Pipedrive really has repeats;
- the CRMs' rate limits: **0 requests over** them, counted by the fakes on arrival across
  every replica: none right after a handover (a kill of the lead), none from two replicas
  delivering one CRM, none from a request held back before it left (the window limiter
  counts a request from its last byte written, see ``bridge.adapter.ratelimit``);
- failover: after each kill of the replica delivering a CRM (its lead, read from the
  replica's log) while deliveries were flowing, the CRM hears from another replica within
  one lease.

Size: ``PBX_BRIDGE_BIG=1`` (or ``PBX_BRIDGE_REPLICA_EVENTS`` / ``PBX_BRIDGE_REPLICA_KILLS``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import json
import logging
import os
import random
import sys
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web

from bridge.fakecrm import TEMPLATES
from bridge.samples import sample
from tests.reliability.fakes import FakeCRM, HttpReceiver, Recorded
from tests.reliability.process import ROOT, BridgeProcess, free_port, write_settings
from tests.reliability.sizes import _size
from tests.reliability.targets import CRM, HTTP_SECRET

TOKEN = "replica-harness-token-0123456789"
REPLICAS = 3
EVENTS = _size("REPLICA_EVENTS", 240, 3000)
KILLS = _size("REPLICA_KILLS", 4, 40)
KILL_EVERY = 2.5  # seconds between kills
LEASE = 3.0  # storage.lease_seconds: the failover bound for in-flight jobs
CRM_LIMIT = 20  # requests per sliding second each fake CRM allows (and its adapter is set to)
WINDOW = 1.0
START_TIMEOUT = 90.0  # a loaded CI machine
NO_KEY = "pipedrive"  # the CRM without an idempotency key
NO_KEY_TARGET = next(t for t in CRM if t.name == NO_KEY)
assert not NO_KEY_TARGET.idempotent


@dataclass
class Limit:
    """A vendor-style rate limit in front of a fake CRM's answers: more than ``allowed``
    requests in any ``WINDOW`` seconds (counted across every replica) get 429, counted as
    over the limit. ``arrivals`` are ``time.monotonic()`` stamps."""

    fake: FakeCRM
    allowed: int = CRM_LIMIT
    arrivals: list[float] = field(default_factory=list)
    accepted: list[Recorded] = field(default_factory=list)
    over: int = 0
    over_at: list[float] = field(default_factory=list)  # when each 429 was answered

    def __post_init__(self) -> None:
        answer: Callable[[Recorded], Any] = self.fake.answer

        def limited(seen: Recorded) -> Any:
            now = time.monotonic()
            self.arrivals.append(now)
            recent = len(self.arrivals) - bisect.bisect_left(self.arrivals, now - WINDOW)
            if recent > self.allowed:
                self.over += 1
                self.over_at.append(now)
                return web.json_response(
                    self.fake.error_json(429), status=429, headers={"Retry-After": "1"}
                )
            self.accepted.append(seen)
            return answer(seen)

        self.fake.answer = limited  # type: ignore[method-assign]


def _settings(tmp: Path, port: int, url: str, crms: dict[str, str]) -> Path:
    limit = {"rate_limit": CRM_LIMIT, "rate_window": WINDOW}  # window-aware, paced within it
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
            "schedule": {"templates": TEMPLATES},  # Pipedrive's notes name the call
            "adapters.http": {
                "type": "http",
                "url": f"{crms['http']}/hook",
                "secret": HTTP_SECRET,
                "concurrency": 4,
                **limit,
            },
            # One request per call (the person is cached): no deal lookups.
            f"adapters.{NO_KEY}": NO_KEY_TARGET.table(crms[NO_KEY])
            | {"link_deals": False, **limit},
        },
    )


async def _send(replicas: list[BridgeProcess], n: int, pace: float) -> tuple[set[str], int]:
    """Round robin; a refused connection goes to the next replica. (acknowledged, failovers)"""
    acked: set[str] = set()
    retried = 0
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(n):
            # Paced on a fixed schedule (not a sleep after each answer, which on a loaded
            # machine stretched the CI stream from 10 s to 30 s).
            await asyncio.sleep(max(0.0, began + i * pace - loop.time()))
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
    return acked, retried


def _leads(replica: BridgeProcess) -> set[str]:
    """The adapters the running replica delivers (its lead), from its own log."""
    held: set[str] = set()
    log = replica.logs / f"{replica.starts:04d}.log"
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the line being written at the kill
        msg = entry.get("msg", "")
        if msg == "delivering this adapter":
            held.add(entry["adapter"])
        elif msg.startswith("lost this adapter's lead"):
            held.discard(entry["adapter"])
        elif msg.startswith("lost the lock connection"):
            held.clear()
    return held


@dataclass
class Kill:
    at: float
    leads: set[str]  # adapters the victim was delivering


async def _chaos(
    replicas: list[BridgeProcess], kills: int, rng: random.Random, log: list[Kill]
) -> list[float]:
    restarts = []
    for _ in range(kills):
        await asyncio.sleep(KILL_EVERY)
        victim = rng.choice(replicas)
        victim.kill()
        at = time.monotonic()
        await victim.wait()
        log.append(Kill(at, _leads(victim)))
        started = time.monotonic()
        await victim.start(timeout=START_TIMEOUT)
        restarts.append(time.monotonic() - started)
    return restarts


def _uuids(keys: Counter[str]) -> set[str]:
    return {k.split("/")[1] for k in keys}


async def _open_jobs(postgres_url: str) -> int:
    conn = await asyncpg.connect(
        postgres_url.split("?")[0],
        server_settings={"search_path": postgres_url.rsplit("=", 1)[1]},
    )
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM jobs WHERE status != 'done'"))
    finally:
        await conn.close()


# --- the fake CRMs, in a process of their own ------------------------------------------------
# A CRM counts a request when it arrives, on a machine of its own. Here the fakes share two
# cores with three replicas, PostgreSQL and the test: in the test's process a request's
# arrival was stamped 20-50 ms late whenever that process was busy or descheduled, and in a
# process of their own at nice -10 their loop still ran up to 200 ms late on the loaded
# machine, stamping 83 of 6,100 requests "over" a limit they were sent within (more than the
# limiter's 2 % guard for network jitter). So the fakes run in a process of their own with a
# real-time priority (SCHED_FIFO) where allowed, nice -10 otherwise: the kernel then runs
# them as soon as a request arrives, as a remote CRM's own machine would, and the lateness
# they still have is measured (``crm_loop_late_ms``). The test reads what they saw from
# ``/state``. CLOCK_MONOTONIC is system-wide, so their stamps compare with the kill times.


def crm_main() -> None:
    """The child: both fakes behind their limits; prints their URLs, serves ``/state``."""
    asyncio.run(_crm_main())


async def _crm_main() -> None:
    try:  # ahead of the machine's other work (see above); the fakes use little CPU
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
    # No collector pauses in the middle of stamping (a full collection over thousands of
    # stamps and recorded requests); this process lives for one run.
    gc.disable()
    for quiet in ("httpx", "aiohttp.access"):
        logging.getLogger(quiet).disabled = True
    crms: dict[str, FakeCRM] = {
        "http": await HttpReceiver(clock=time.time).start(),
        NO_KEY: await NO_KEY_TARGET.fake(time.time).start(),
    }
    limits = {name: Limit(fake) for name, fake in crms.items()}
    late: list[tuple[float, float]] = []  # (when, how late a 10 ms timer fired)

    async def probe() -> None:
        """How late this loop runs: the accuracy of the arrival stamps."""
        while True:
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            now = time.monotonic()
            late.append((now, now - due))

    async def state(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "late": late,
                "crm": {
                    name: {
                        "accepted": [
                            [lim.fake.call_key(seen), seen.headers.get("webhook-id", "")]
                            for seen in lim.accepted
                        ],
                        "arrivals": lim.arrivals,
                        "over_at": lim.over_at,
                    }
                    for name, lim in limits.items()
                },
            }
        )

    prober = asyncio.create_task(probe())
    app = web.Application()
    app.router.add_get("/state", state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    urls = {name: fake.base_url for name, fake in crms.items()}
    print(json.dumps({"crms": urls, "state": f"http://127.0.0.1:{port}/state"}), flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    finally:
        prober.cancel()
        await runner.cleanup()
        for fake in crms.values():
            await fake.close()


@dataclass
class CRMSeen:
    """What one fake CRM saw, as read from the child."""

    accepted: list[tuple[str | None, str]]  # (call key, webhook-id) of each request taken
    arrivals: list[float]
    over_at: list[float]

    def delivered(self) -> Counter[str]:
        return Counter(key for key, _ in self.accepted if key is not None)


class CRMProcess:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.urls: dict[str, str] = {}
        self._state = ""
        self.late: list[tuple[float, float]] = []

    async def start(self) -> CRMProcess:
        code = "from tests.reliability.test_replicas import crm_main; crm_main()"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        ready = json.loads(line)
        self.urls, self._state = ready["crms"], ready["state"]
        return self

    async def seen(self) -> dict[str, CRMSeen]:
        async with httpx.AsyncClient(timeout=30) as client:
            doc = (await client.get(self._state)).json()
        self.late = [tuple(x) for x in doc["late"]]  # type: ignore[misc]
        return {
            name: CRMSeen([tuple(a) for a in c["accepted"]], c["arrivals"], c["over_at"])  # type: ignore[misc]
            for name, c in doc["crm"].items()
        }

    def lag_before(self, t: float) -> float:
        """The worst lateness of the CRMs' loop in the window before ``t``."""
        i = bisect.bisect_left(self.late, (t - WINDOW - 0.1, 0.0))
        return max((late for when, late in self.late[i:] if when <= t + 0.05), default=0.0)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_three_replicas_under_kill_9_lose_nothing(tmp_path: Path, postgres_url: str) -> None:
    began = time.monotonic()
    crm = await CRMProcess().start()
    replicas = []
    for _ in range(REPLICAS):
        port = free_port()
        config = _settings(tmp_path, port, postgres_url, crm.urls)
        replicas.append(BridgeProcess(config, port, tmp_path / str(port)))
    rng = random.Random(7)
    kills: list[Kill] = []
    try:
        for r in replicas:  # one at a time: three interpreters importing at once crawl
            await r.start(timeout=START_TIMEOUT)
        started = time.monotonic()
        pace = KILL_EVERY * KILLS / EVENTS  # the stream lasts as long as the chaos
        (acked, retried), restarts = await asyncio.gather(
            _send(replicas, EVENTS, pace), _chaos(replicas, KILLS, rng, kills)
        )
        chaos_done = time.monotonic()
        deadline = chaos_done + 60 + EVENTS / CRM_LIMIT
        open_jobs = -1
        while time.monotonic() < deadline:
            # The database first: reading the fakes' state (thousands of stamps as JSON)
            # holds their loop for tens of ms, which would stamp arrivals late meanwhile.
            open_jobs = await _open_jobs(postgres_url)
            if open_jobs == 0:
                seen = await crm.seen()
                if all(acked <= _uuids(c.delivered()) for c in seen.values()):
                    break
            await asyncio.sleep(0.5)
        drained = time.monotonic()
        seen = await crm.seen()
        report: dict[str, Any] = {}
        for name, c in seen.items():
            delivered = c.delivered()
            report[name] = {
                "lost": len(acked - _uuids(delivered)),
                "twice": sum(n - 1 for n in delivered.values() if n > 1),
                "over": len(c.over_at),
                "over_within_2s_of_a_lead_kill": sum(
                    1
                    for t in c.over_at
                    if any(name in k.leads and 0 <= t - k.at < 2 for k in kills)
                ),
                "over_while_the_crm_ran_20ms_late": sum(
                    1 for t in c.over_at if crm.lag_before(t) > 0.02
                ),
                "requests": len(c.arrivals),
                "most_in_a_second": _most_in_a_window(c.arrivals),
            }
        repeats_keyed = _repeats_under_one_key(seen["http"])
        gaps = {name: _failover_gaps(kills, name, c.arrivals) for name, c in seen.items()}
        lead_kills = sum(1 for k in kills if k.leads)
        lateness = [x for _, x in crm.late]
        figures = {
            "sent": EVENTS,
            "acked": len(acked),
            "retried_on_another_replica": retried,
            "kills": len(kills),
            "lead_kills": lead_kills,
            "crm": report,
            "http_repeats_under_one_webhook_id": repeats_keyed,
            "failover_s": {n: sorted(round(x, 2) for x in g) for n, g in gaps.items()},
            "lease_s": LEASE,
            "restart_s_max": round(max(restarts, default=0), 2),
            "crm_loop_late_ms": {
                "p99": round(1000 * _p99(lateness), 1),
                "max": round(1000 * max(lateness, default=0), 1),
            },
            "seconds": {
                "start": round(started - began, 1),
                "chaos": round(chaos_done - started, 1),
                "drain": round(drained - chaos_done, 1),
            },
        }
        print("\nREPLICA HARNESS " + json.dumps(figures))
        assert len(acked) >= EVENTS * 0.95  # the balancer found a live replica nearly always
        for name, row in report.items():
            assert row["lost"] == 0, f"{name}: acknowledged but never delivered"
            # A handover must not add the new lead's window to the old one's (the bug this
            # harness found: fixed by ratelimit.spend_all).
            assert row["over_within_2s_of_a_lead_kill"] == 0, f"{name}: burst after a handover"
            # Two replicas delivering one CRM at once would send ~2x the limit; a request
            # held back between its grant and its write (counted from the grant) or a fake
            # stamping arrivals late (its loop starved) showed as a few over it.
            assert row["over"] == 0, f"{name}: {row['over']} requests over the CRM's limit"
            assert row["most_in_a_second"] <= CRM_LIMIT, f"{name}: over the limit"
        assert repeats_keyed is True
        assert open_jobs == 0
        for name, g in gaps.items():
            assert max(g, default=0) <= LEASE, f"{name}: failover slower than one lease"
    finally:
        for r in replicas:
            await r.close()
        await crm.close()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0


def _most_in_a_window(arrivals: list[float]) -> int:
    """The most requests that arrived in any ``WINDOW`` (429s included)."""
    return max(
        (i - bisect.bisect_left(arrivals, t - WINDOW) + 1 for i, t in enumerate(arrivals)),
        default=0,
    )


def _repeats_under_one_key(c: CRMSeen) -> bool:
    """Every call the http CRM took more than once came under one ``webhook-id``."""
    ids: dict[str, set[str]] = {}
    for key, webhook_id in c.accepted:
        if key is not None:
            ids.setdefault(key, set()).add(webhook_id)
    return all(len(v) == 1 and "" not in v for v in ids.values())


def _failover_gaps(kills: list[Kill], adapter: str, arrivals: list[float]) -> list[float]:
    """For each kill of the replica delivering ``adapter`` while its deliveries were
    flowing, the time to the CRM's next request (which another replica sent)."""
    gaps = []
    for k in kills:
        if adapter not in k.leads:
            continue
        i = bisect.bisect_right(arrivals, k.at)
        if 0 < i < len(arrivals) and k.at - arrivals[i - 1] < 0.5:  # deliveries were flowing
            gaps.append(arrivals[i] - k.at)
    return gaps
