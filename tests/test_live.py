"""Live calls (#14): ringing / answered / over jobs, their order per call, staleness, the
fast lane, and the http and local adapters' live actions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from bridge.adapter.contract import LIVE_ACTIONS, supports
from bridge.adapter.ratelimit import TokenBucket, first_turn
from bridge.registry import adapter_class
from bridge.samples import sample
from bridge.testing import AdapterHarness
from tests.conftest import FakeClock

HOOK = "https://crm.example/hook"
SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3ODk="
UUID = "live-0001-4aag-b000-000000000001"


def inbound(event: str, callee: str = "", now: float = 0.0, **extra: str) -> dict[str, str]:
    body = sample("call_user_start" if event == "call_user_start" else event, UUID, now)
    body.update(event=event, direction="inbound", caller="79221111123", callee=callee, **extra)
    if event == "call_missed":
        body.pop("direction")
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def http_harness(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    opened: list[AdapterHarness] = []

    async def open_(**table: Any) -> AdapterHarness:
        table = {"type": "http", "url": HOOK, "secret": SECRET, "users": {"101": 7}, **table}
        h = await AdapterHarness.open(tmp_path, "hook", table, clock=clock)
        opened.append(h)
        return h

    yield open_
    for h in opened:
        await h.close()


def documents(route: Any) -> list[dict[str, Any]]:
    verifier = Webhook(SECRET)
    return [verifier.verify(c.request.content, dict(c.request.headers)) for c in route.calls]


async def statuses(h: AdapterHarness) -> list[tuple[str, str, str, str | None]]:
    rows = await h.db.db.fetchall(
        "SELECT e.event, j.action, j.status, j.result FROM jobs j JOIN events e"
        " ON e.id = j.event_id ORDER BY j.id"
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_capability_by_presence_and_default_events() -> None:
    assert all(supports(adapter_class("http"), a) for a in ("ringing", "answered"))
    assert not supports(adapter_class("http"), "over")  # log_call closes its screen pop
    assert not any(supports(adapter_class("hubspot"), a) for a in LIVE_ACTIONS)
    assert set(adapter_class("http").Settings.model_fields["events"].default) >= set(LIVE_ACTIONS)


async def test_ring_group_each_extension_rings_once_signed(http_harness, no_unmocked_http, clock):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(204))
    h = await http_harness()
    for ext in ("101", "102", "103", "102"):  # 102 twice: onlinePBX repeated a webhook
        await h.store(inbound("call_user_start", ext, clock()))
    await h.attempt()
    docs = documents(route)
    assert [d["call"]["extension"] for d in docs] == ["101", "102", "103"]
    assert {d["type"] for d in docs} == {"call.ringing"} and docs[0]["version"] == "1"
    assert docs[0]["user"] == "7" and docs[1]["user"] is None  # users map; 102 unmapped
    assert docs[0]["call"]["client"] == "+79221111123"
    assert len({d["id"] for d in docs}) == 3  # one webhook-id per ringing extension
    await h.store(inbound("call_answered", "102", clock()))
    await h.attempt()
    answered = documents(route)[-1]
    assert answered["type"] == "call.answered" and answered["call"]["extension"] == "102"


async def test_outbound_call_start_rings_the_caller(http_harness, no_unmocked_http, clock):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness(users={"505": 9})
    job = await h.deliver(sample("call_start", UUID, clock()))  # caller 505 → 79111117960
    assert job.status == "done"
    (doc,) = documents(route)
    assert doc["type"] == "call.ringing" and doc["user"] == "9"
    assert doc["call"]["direction"] == "outbound" and doc["call"]["client"] == "+79111117960"


async def test_inbound_call_start_to_a_line_rings_nobody(http_harness, no_unmocked_http, clock):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness()
    job = await h.deliver(inbound("call_start", "74991111282", clock()))
    assert job.result.startswith("skipped: no extension rings")
    assert route.calls.call_count == 0


async def test_out_of_order_a_ring_after_the_end_or_answer_shows_nothing(
    http_harness, no_unmocked_http, clock
):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness(events=["ringing", "answered"])
    await h.store(inbound("call_answered", "101", clock()))
    await h.store(inbound("call_user_start", "102", clock()))  # arrives after the answer
    await h.attempt()
    rows = await statuses(h)
    assert rows[1][3] == "skipped: the call was already answered"
    other = dict(inbound("call_user_start", "101", clock()), uuid="live-0002")
    await h.store(dict(inbound("call_missed", now=clock()), uuid="live-0002"))
    await h.store(other)  # the ring of a call that is already over
    await h.attempt()
    assert (await statuses(h))[-1][3].startswith("skipped: the call is already over")
    assert [d["type"] for d in documents(route)] == ["call.answered"]


async def test_a_stale_card_is_skipped(http_harness, no_unmocked_http, clock):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    clock.advance(61)  # the bridge was down, or the CRM slow: the phone stopped ringing
    (job,) = await h.attempt()
    assert job.status == "done"
    assert job.result == "skipped: stale: the event is 61 s old (live_max_age_seconds 60)"
    assert route.calls.call_count == 0


async def test_a_failing_card_is_retried_soon_then_put_aside_never_dead(
    http_harness, no_unmocked_http, clock
):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(503))
    h = await http_harness()
    await h.store(inbound("call_user_start", "101", clock()))
    (job,) = await h.attempt()
    assert job.status == "pending" and job.due_at - clock() <= 2.0  # soon, not in minutes
    await h.store(dict(inbound("call_missed", now=clock()), uuid="x"))  # another call ends
    clock.advance(2)
    (job,) = [j for j in await h.attempt() if j.action == "ringing"]
    assert job.status == "pending"  # still useful: its own call goes on
    await h.store(inbound("call_missed", now=clock()))
    clock.advance(2)
    jobs = await h.attempt()
    ring = next(j for j in jobs if j.action == "ringing")
    assert ring.status == "done" and ring.result.startswith("skipped: the call is already over")
    sent = [json.loads(c.request.content)["type"] for c in route.calls]
    assert sent.count("call.ringing") == 2  # tried twice, not after its call ended


async def test_a_refused_card_is_put_aside_not_dead(http_harness, no_unmocked_http, clock):
    no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(400, json={"no": "thanks"}))
    h = await http_harness()
    job = await h.deliver(inbound("call_user_start", "101", clock()))
    assert job.status == "done" and job.result.startswith("skipped: failed: ")


async def test_events_without_live_actions_make_no_live_jobs(http_harness, no_unmocked_http, clock):
    h = await http_harness(events=["log_call", "create_task"])
    await h.store(inbound("call_user_start", "101", clock()))
    await h.store(inbound("call_answered", "101", clock()))
    assert await statuses(h) == []


async def test_filters_apply_to_live_actions(http_harness, no_unmocked_http, clock):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness(extensions=["101"])
    await h.store(inbound("call_user_start", "102", clock()))
    (job,) = await h.attempt()
    assert job.result == "skipped: extension 102 not in extensions"
    assert route.calls.call_count == 0


async def test_first_turn_requests_overtake_waiting_ones() -> None:
    bucket = TokenBucket(rate=20.0)  # one request each 50 ms
    order: list[str] = []

    async def request(name: str, first: bool) -> None:
        if first:
            with first_turn():
                await bucket.acquire()
        else:
            await bucket.acquire()
        order.append(name)

    waiting = [asyncio.create_task(request(f"post{i}", False)) for i in range(5)]
    await asyncio.sleep(0.01)  # post0 went, post1..4 wait in line
    started = time.monotonic()
    await request("card", True)
    assert time.monotonic() - started < 0.05 + 0.03  # within one slot
    await asyncio.gather(*waiting)
    assert order[:2] == ["post0", "card"]


def test_documented_shapes_are_json() -> None:
    # The live document keeps the version "1" discipline: extra fields only.
    from adapters.http.adapter import live_call_document
    from bridge.call import build_call
    from bridge.phones import NumberParser

    call = build_call(inbound("call_user_start", "101", 1_780_000_000), NumberParser("RU", 5))
    doc = live_call_document(call)
    assert set(doc) == {
        "uuid",
        "domain",
        "direction",
        "client",
        "client_raw",
        "extension",
        "line",
        "event_at",
    }
    json.dumps(doc)
