"""Live calls (#14): how fast a card reaches the CRM, and whether a ring group stays right.

    python -m bench.live [--part idle|backlog|group|bitrix24|all] [--calls 100] [--rings 20]

``pbx-bridge serve`` runs in a child process with one ``http`` adapter whose loopback CRM
lives in this process; every time is this process's ``time.monotonic()`` (the webhook's 200
and the CRM's arrival stamp share it).

- **idle**: one new ring (``call_user_start``) every ``gap`` seconds; webhook 200 → the
  ``call.ringing`` request reaching the CRM. Baseline in the same run: the post-call path
  (``call_end`` → ``call.logged``), alternating with the rings.
- **backlog**: 1,000 ``call_end`` webhooks first, behind a CRM limit of 5 requests/s (the
  adapter's ``rate_limit = 5``; the fake CRM refuses a 6th request in
  any second). Then ``rings`` new rings at random moments: each card request must reach the
  CRM within one rate-limit slot (≤ 1/limit + 30 ms) of the webhook — measured from the
  moment the webhook was *sent*, so ingest counts against it. Run twice: the token bucket
  (``rate_window`` unset), then the sliding-window limiter (``rate_window = 1``).
- **group**: ``calls`` concurrent inbound calls to a ring group of 5 extensions: each rings
  all five (one ring repeated, as onlinePBX sometimes does), is answered by one, ends; one
  call in ten also gets a late ring and a repeated answer *after* its end (out of order).
  The CRM's documents are replayed as a card screen: a ring shows the card to its
  extension, an answer hides it from the others, the call's ``call.logged`` closes them all.
  Counted: duplicate cards (a second ``call.ringing`` for one call and extension — with the
  http adapter the analogue of a second register), cards left shown after their call's end,
  and cards that reached the CRM after the call's end document.
- **bitrix24**: the same ring group against the Bitrix24 fake (its register / show / hide /
  finish, ``CALL_ID`` reuse): second registrations of one call, repeated register requests,
  cards still shown (``shown`` users) once the call ended, and register/show requests that
  reached the portal after the call's ``finish``. Caller numbers differ per call (the portal
  would otherwise hand a repeated register of another call the same ``CALL_ID``).

The machine is shared: the load average is printed with every part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bench.common import (
    FakeCRM,
    bridge_process,
    free_port,
    machine,
    percentile,
    webhook_url,
    write_settings,
)
from bridge.samples import sample

SECRET = "whsec_" + "YmVuY2gtbGl2ZS1zaWduaW5nLWtleS0wMTIzNDU2Nzg5"
RING_GROUP = ("101", "102", "103", "104", "105")
LINE = "74991111282"


@dataclass
class Doc:
    at: float
    type: str
    uuid: str
    extension: str | None


@dataclass
class LiveCRM(FakeCRM):
    """The bench's fake CRM, also keeping every document it accepted, in arrival order."""

    docs: list[Doc] = field(default_factory=list)

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        raw = await request.read()
        answer = await super()._handle(request)
        if answer.status < 300 and raw.startswith(b"{"):
            doc = json.loads(raw)
            call = doc.get("call") or {}
            self.docs.append(
                Doc(now, doc.get("type", ""), call.get("uuid", ""), call.get("extension"))
            )
        return answer

    def first(self, kind: str, uuid: str) -> float | None:
        return next((d.at for d in self.docs if d.type == kind and d.uuid == uuid), None)


def outcomes(db: Path) -> str:
    """What became of the live jobs (the bridge's own file, read after the run)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT action, CASE WHEN result LIKE 'skipped: %' THEN substr(result, 10, 28)"
            " ELSE status END AS outcome, COUNT(*) FROM jobs"
            " WHERE action IN ('ringing', 'answered', 'over') GROUP BY 1, 2 ORDER BY 1, 3 DESC"
        ).fetchall()
    return "; ".join(f"{a} {o.strip()}: {n}" for a, o, n in rows)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (2 cores shared with other work)"


def event(name: str, uuid: str, **fields: str) -> str:
    body = sample(name, uuid)
    body.update(fields)
    return urlencode(body)


def ring(uuid: str, ext: str) -> str:
    return event("call_user_start", uuid, callee=ext, caller="79221111123", gateway=LINE)


class Sender:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._url = webhook_url(port)

    async def post(self, body: str) -> float:
        """Send one webhook; the monotonic time its 200 arrived."""
        async with self._session.post(
            self._url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
        return time.monotonic()


async def until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def stats(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 50):6.1f} ms  p90 {percentile(ms, 90):6.1f} ms"
        f"  p99 {percentile(ms, 99):6.1f} ms  max {max(ms):6.1f} ms  (n={len(ms)})"
    )


async def with_bridge(crm: LiveCRM, table: dict[str, Any], run: Any) -> Any:
    base = await crm.start()
    port = free_port()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
            adapters = {"crm": {"type": "http", "url": base + "/hook", "secret": SECRET, **table}}
            config = write_settings(Path(tmp), port, adapters, log_level="WARNING")
            with bridge_process(config, port, Path(tmp) / "bridge.log"):
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=32)
                ) as session:
                    result = await run(Sender(session, port))
            print(f"live jobs: {outcomes(Path(tmp) / 'bridge.db')}")
            return result
    finally:
        await crm.close()


# --- idle ------------------------------------------------------------------------------


async def idle(calls: int, gap: float) -> None:
    print(f"\n== idle: {calls} rings and {calls} post-call ends, one every {gap} s; {loadavg()}")
    crm = LiveCRM()
    waits: dict[str, tuple[list[float], list[float]]] = {"ring": ([], []), "end": ([], [])}

    async def run(send: Sender) -> None:
        await send.post(event("call_end", f"warm-{time.time_ns()}"))  # the client's first connect
        await asyncio.sleep(gap)
        for i in range(calls):
            for kind, doc in (("ring", "call.ringing"), ("end", "call.logged")):
                uuid = f"idle-{kind}-{i}-{time.time_ns()}"
                sent = time.monotonic()
                acked = await send.post(
                    ring(uuid, "101") if kind == "ring" else event("call_end", uuid)
                )
                if await until(lambda u=uuid, d=doc: crm.first(d, u) is not None, 5):
                    at = crm.first(doc, uuid)
                    assert at is not None
                    waits[kind][0].append((at - acked) * 1000)
                    waits[kind][1].append((at - sent) * 1000)
                await asyncio.sleep(gap)

    await with_bridge(crm, {}, run)
    (card, card_sent), (post, post_sent) = waits["ring"], waits["end"]
    print(f"ring: 200  → card request       {stats(card)}")
    print(f"ring: sent → card request       {stats(card_sent)}")
    print(f"end:  200  → post-call request  {stats(post)}  (baseline, same run)")
    print(f"end:  sent → post-call request  {stats(post_sent)}  (baseline, same run)")
    print(
        "ratio card / post-call, webhook sent → request:"
        f" p50 {percentile(card_sent, 50) / percentile(post_sent, 50):.2f}x,"
        f" p99 {percentile(card_sent, 99) / percentile(post_sent, 99):.2f}x;"
        " targets: 200 → card p50 <= 30 ms, p99 <= 100 ms"
    )
    print(loadavg())


# --- backlog ----------------------------------------------------------------------------


async def backlog(rings: int, limit: int = 5, pending: int = 1000, window: float = 0) -> None:
    how = f"rate_window = {window:g} (sliding window)" if window else "token bucket"
    print(
        f"\n== backlog: {pending} post-call jobs behind {limit} requests/s, {rings} rings,"
        f" {how}; {loadavg()}"
    )
    crm = LiveCRM(limit=limit, window=1.0)
    waits: list[tuple[float, float, int]] = []  # (from send, from 200, backlog left) per ring
    bound = 1000 / limit + 30

    async def run(send: Sender) -> None:
        started = time.monotonic()
        queue = iter(range(pending))

        async def feeder() -> None:
            for i in queue:
                await send.post(event("call_end", f"backlog-{i}-{time.time_ns()}"))

        await asyncio.gather(*(feeder() for _ in range(16)))
        print(f"{pending} call_end webhooks acknowledged in {time.monotonic() - started:.1f} s")
        await asyncio.sleep(1.0)
        for i in range(rings):
            await asyncio.sleep(random.uniform(0.3, 1.3))  # any phase of the rate slot
            uuid = f"new-ring-{i}-{time.time_ns()}"
            sent = time.monotonic()
            acked = await send.post(ring(uuid, "101"))
            await until(lambda u=uuid: crm.first("call.ringing", u) is not None, 10)
            at = crm.first("call.ringing", uuid)
            if at is not None:
                left = pending - sum(d.type == "call.logged" for d in crm.docs)
                waits.append(((at - sent) * 1000, (at - acked) * 1000, left))

    table: dict[str, Any] = {"rate_limit": limit, "concurrency": 2}
    if window:
        table["rate_window"] = window
    await with_bridge(crm, table, run)
    from_send = [w[0] for w in waits]
    from_ack = [w[1] for w in waits]
    print(
        f"rings that reached the CRM: {len(waits)}/{rings}; post-call jobs still pending then:"
        f" {min(w[2] for w in waits)}..{max(w[2] for w in waits)}"
    )
    print(f"webhook sent → card request {stats(from_send)}")
    print(f"webhook 200  → card request {stats(from_ack)}")
    within = sum(w <= bound for w in from_send)
    print(
        f"within one slot (<= {bound:.0f} ms of the webhook): {within}/{len(waits)};"
        f" the CRM refused {crm.rejected} requests over its limit"
    )
    print(
        f"baseline: the newest post-call job had {pending} ahead of it,"
        f" ~{pending / limit:.0f} s at the limit"
    )
    print(loadavg())


# --- group ------------------------------------------------------------------------------


async def group(calls: int) -> None:
    print(f"\n== group: {calls} concurrent calls, ring group of {len(RING_GROUP)}; {loadavg()}")
    crm = LiveCRM(latency=0.02)
    ended: dict[str, float] = {}  # uuid → when its call_end got the 200
    late: set[str] = set()

    async def one(send: Sender, n: int) -> None:
        uuid = f"group-{n}-{time.time_ns()}"
        await asyncio.sleep(random.uniform(0, 2))
        await send.post(
            event(
                "call_start",
                uuid,
                direction="inbound",
                caller="79221111123",
                callee=LINE,
                gateway=LINE,
            )
        )
        rang = list(RING_GROUP)
        random.shuffle(rang)
        for ext in [*rang, rang[0]]:  # the first ring repeated: a duplicate webhook
            await send.post(ring(uuid, ext))
            await asyncio.sleep(random.uniform(0, 0.05))
        await asyncio.sleep(random.uniform(0.5, 3))
        who = random.choice(RING_GROUP)
        answer = event(
            "call_answered",
            uuid,
            direction="inbound",
            caller="79221111123",
            callee=who,
            gateway=LINE,
        )
        await send.post(answer)
        await asyncio.sleep(random.uniform(0.5, 3))
        ended[uuid] = await send.post(
            event(
                "call_end",
                uuid,
                direction="inbound",
                caller="79221111123",
                callee=who,
                gateway=LINE,
                call_duration="40",
                dialog_duration="30",
            )
        )
        if n % 10 == 0:  # out of order: a ring and the answer again after the end
            late.add(uuid)
            await send.post(ring(uuid, "106"))
            await send.post(answer)

    async def run(send: Sender) -> None:
        started = time.monotonic()
        await asyncio.gather(*(one(send, n) for n in range(calls)))
        print(f"{calls} calls' webhooks sent in {time.monotonic() - started:.1f} s")
        await until(lambda: sum(d.type == "call.logged" for d in crm.docs) >= calls, 120)
        await asyncio.sleep(2)  # anything that would still arrive late

    await with_bridge(crm, {"concurrency": 4, "rate_limit": 0}, run)
    shown: dict[str, set[str]] = {}
    over: set[str] = set()
    rings_seen: dict[tuple[str, str | None], int] = {}
    after_end = after_ack = 0
    for d in crm.docs:
        if d.type in ("call.ringing", "call.answered"):
            if d.uuid in over:
                after_end += 1
            if d.uuid in ended and d.at > ended[d.uuid]:
                after_ack += 1
        if d.type == "call.ringing":
            rings_seen[(d.uuid, d.extension)] = rings_seen.get((d.uuid, d.extension), 0) + 1
            shown.setdefault(d.uuid, set()).add(d.extension or "")
        elif d.type == "call.answered":
            shown[d.uuid] = {d.extension or ""} & shown.get(d.uuid, set())
        elif d.type == "call.logged":
            over.add(d.uuid)
            shown.pop(d.uuid, None)
    left = sum(len(s) for s in shown.values())
    cards = sum(rings_seen.values())
    print(
        f"card requests: {cards} ringing for {len(rings_seen)} (call, extension) pairs"
        f" of {calls * len(RING_GROUP)} rung; {sum(d.type == 'call.answered' for d in crm.docs)}"
        f" answered; {len(over)}/{calls} calls logged"
    )
    print(f"duplicate cards (second ring of one extension): {cards - len(rings_seen)}")
    print(f"cards left shown after their call ended: {left}")
    print(
        f"cards that reached the CRM after their call's end: {after_end}"
        f" (late rings/answers sent after the end for {len(late)} calls)"
    )
    print(
        f"cards that left after the end webhook's 200 (decided before it, closed by the end"
        f" that followed them): {after_ack}"
    )
    print(loadavg())


async def group_bitrix24(calls: int) -> None:
    """The ring group against the Bitrix24 fake (adapters/bitrix24/fake.py: the portal's own
    register / show / hide / finish rules, CALL_ID reuse within 30 minutes included)."""
    from adapters.bitrix24.fake import FakeBitrix24, reliability_table

    print(
        f"\n== group, Bitrix24: {calls} concurrent calls, ring group of {len(RING_GROUP)};"
        f" {loadavg()}"
    )
    fake = await FakeBitrix24(clock=time.time).start()
    portal = fake.portal
    users = {"101": "7", "102": "8", "103": "9", "104": "1", "105": "10"}
    portal.users[10] = {"ID": "10", "NAME": "Petr", "LAST_NAME": "Ivanov", "ACTIVE": True}
    ended: set[str] = set()
    late: set[str] = set()
    port = free_port()

    async def one(send: Sender, n: int) -> None:
        uuid = f"b24-{n}-{time.time_ns()}"
        caller = f"7922{n:07d}"
        await asyncio.sleep(random.uniform(0, 2))
        who = random.choice(RING_GROUP)
        kw = {"direction": "inbound", "caller": caller, "gateway": LINE}
        await send.post(event("call_start", uuid, callee=LINE, **kw))
        rang = list(RING_GROUP)
        random.shuffle(rang)
        for ext in [*rang, rang[0]]:  # the first ring repeated: a duplicate webhook
            await send.post(event("call_user_start", uuid, callee=ext, **kw))
            await asyncio.sleep(random.uniform(0, 0.05))
        await asyncio.sleep(random.uniform(0.5, 3))
        await send.post(event("call_answered", uuid, callee=who, **kw))
        await asyncio.sleep(random.uniform(0.5, 3))
        await send.post(
            event("call_end", uuid, callee=who, call_duration="40", dialog_duration="30", **kw)
        )
        ended.add(uuid)
        if n % 10 == 0:  # out of order: a ring and the answer again after the end
            late.add(uuid)
            await send.post(event("call_user_start", uuid, callee="106", **kw))
            await send.post(event("call_answered", uuid, callee=who, **kw))

    try:
        with tempfile.TemporaryDirectory(prefix="bench-live-b24-") as tmp:
            table = {**reliability_table(fake.base_url), "concurrency": 4}
            # A TOML table the settings writer cannot spell: the documented variable form.
            os.environ["PBX_BRIDGE_ADAPTERS__B24__USERS"] = json.dumps(users)
            config = write_settings(Path(tmp), port, {"b24": table}, log_level="WARNING")
            with bridge_process(config, port, Path(tmp) / "bridge.log"):
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=32)
                ) as session:
                    send = Sender(session, port)
                    started = time.monotonic()
                    await asyncio.gather(*(one(send, n) for n in range(calls)))
                    print(f"{calls} calls' webhooks sent in {time.monotonic() - started:.1f} s")
                    await until(lambda: len(portal.finished()) >= calls, 180)
                    await asyncio.sleep(3)  # anything that would still arrive late
            print(f"live jobs: {outcomes(Path(tmp) / 'bridge.db')}")
    finally:
        await fake.close()
    by_call: dict[str, list[Any]] = {}
    for reg in portal.registrations.values():
        by_call.setdefault(reg.external_id or "", []).append(reg)
    finished: set[str] = set()
    registers: dict[str, int] = {}
    after_end = 0
    for method, params in portal.log:
        if method == "telephony.externalcall.register":
            uuid = str(params.get("EXTERNAL_CALL_ID"))
            registers[uuid] = registers.get(uuid, 0) + 1
            after_end += uuid in finished
            continue
        reg = portal.registrations.get(str(params.get("CALL_ID")))
        if reg is None:
            continue
        if method == "telephony.externalcall.show":
            after_end += (reg.external_id or "") in finished
        elif method == "telephony.externalcall.finish":
            finished.add(reg.external_id or "")
    left = sum(len(r.shown) for uuid in ended for r in by_call.get(uuid, []))
    shows = len(portal.calls("telephony.externalCall.show"))
    hides = len(portal.calls("telephony.externalCall.hide"))
    print(
        f"registered calls: {len(by_call)}/{calls}; finished {len(portal.finished())};"
        f" register requests {sum(registers.values())}, show {shows}, hide {hides}"
    )
    print(
        f"duplicate registers: {sum(len(r) - 1 for r in by_call.values())} second"
        f" registrations, {sum(n - 1 for n in registers.values())} repeated register requests"
    )
    print(f"cards left shown after their call ended: {left}")
    print(
        f"cards shown (register/show) after their call was finished: {after_end}"
        f" (late rings/answers sent after the end for {len(late)} calls)"
    )
    print(loadavg())


async def main(part: str, calls: int, rings: int, gap: float) -> None:
    print(f"machine: {machine()}")
    if part in ("idle", "all"):
        await idle(calls, gap)
    if part in ("backlog", "all"):
        await backlog(rings)
        await backlog(rings, window=1.0)  # the per-window CRM rule (amoCRM's 7/s)
    if part in ("group", "all"):
        await group(calls)
    if part in ("bitrix24", "all"):
        await group_bitrix24(calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part", choices=("idle", "backlog", "group", "bitrix24", "all"), default="all"
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rings", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main(args.part, args.calls, args.rings, args.gap))
