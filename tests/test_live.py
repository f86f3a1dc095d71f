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

    async def open_(storage: dict[str, Any] | None = None, **table: Any) -> AdapterHarness:
        table = {"type": "http", "url": HOOK, "secret": SECRET, "users": {"101": 7}, **table}
        more = {"storage": storage} if storage else {}
        h = await AdapterHarness.open(tmp_path, "hook", table, clock=clock, **more)
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
    assert all(supports(adapter_class("local"), a) for a in LIVE_ACTIONS)
    # ...and on by default there too, like everywhere (the embedded default keeps live calls).
    assert set(adapter_class("local").Settings().events) >= set(LIVE_ACTIONS)
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


# --- the fast lane, per-call order, staleness on both backends, calls in progress ---------


def other_call(event: str, uuid: str, callee: str = "", now: float = 0.0) -> dict[str, str]:
    return dict(inbound(event, callee, now), uuid=uuid)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_table(request: Any, tmp_path: Path) -> dict[str, Any]:
    if request.param == "postgresql":
        return {"url": request.getfixturevalue("postgres_url")}
    return {"path": tmp_path / "live.db"}


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait for ``check()`` to hold (a bound on *whether* it happens, not a speed test)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "did not happen"
        await asyncio.sleep(0.01)


async def test_a_card_is_claimed_while_every_post_call_slot_waits(
    http_harness, no_unmocked_http, clock
):
    """The fast lane: a CRM outage left a backlog, the worker's post-call slots are all
    taken by requests that hang, and a new ring still reaches the CRM."""
    release = asyncio.Event()
    sent: list[str] = []

    async def crm(request: httpx.Request) -> httpx.Response:
        kind = json.loads(request.content)["type"]
        sent.append(kind)
        if kind != "call.ringing":
            await release.wait()  # the backlog's requests hang
        return httpx.Response(200)

    no_unmocked_http.post(HOOK).mock(side_effect=crm)
    h = await http_harness(concurrency=2)
    for i in range(40):
        await h.store(other_call("call_end", f"backlog-{i}", "101", clock()))
    h.worker.start()
    await until(lambda: len(sent) == 2)  # both post-call slots hang
    await h.store(other_call("call_user_start", "new-ring", "101", clock()))
    h.worker.wake()
    await until(lambda: "call.ringing" in sent)
    assert sent.count("call.ringing") == 1 and len(sent) == 3  # ahead of the other 38
    release.set()
    await until(lambda: len(sent) == 41)


async def test_the_jobs_of_one_call_never_run_two_at_once_and_keep_their_order(
    http_harness, no_unmocked_http, clock
):
    running: dict[str, int] = {}
    overlap: list[str] = []
    order: dict[str, list[str]] = {}

    async def crm(request: httpx.Request) -> httpx.Response:
        doc = json.loads(request.content)
        uuid = doc["call"]["uuid"]
        running[uuid] = running.get(uuid, 0) + 1
        if running[uuid] > 1:
            overlap.append(uuid)
        order.setdefault(uuid, []).append(doc["call"].get("extension") or doc["type"])
        await asyncio.sleep(0.01)  # a CRM that takes a moment: others of the call would start
        running[uuid] -= 1
        return httpx.Response(200)

    no_unmocked_http.post(HOOK).mock(side_effect=crm)
    h = await http_harness(concurrency=4)
    calls = [f"group-{i}" for i in range(8)]
    for uuid in calls:  # a ring group: three extensions ring for each call, one twice
        for ext in ("101", "102", "103", "102"):
            await h.store(other_call("call_user_start", uuid, ext, clock()))
    h.worker.start()
    await until(lambda: sum(len(o) for o in order.values()) == 3 * len(calls))
    assert overlap == []
    assert all(order[uuid] == ["101", "102", "103"] for uuid in calls)


async def test_a_card_for_an_ended_or_stale_call_is_skipped_on_both_backends(
    http_harness, no_unmocked_http, clock, storage_table
):
    route = no_unmocked_http.post(HOOK).mock(return_value=httpx.Response(200))
    h = await http_harness(events=["ringing", "answered"], storage=storage_table)
    await h.store(other_call("call_missed", "ended"))
    await h.store(other_call("call_user_start", "ended", "101", clock()))  # late, out of order
    await h.store(other_call("call_answered", "answered", "101", clock()))
    await h.store(other_call("call_user_start", "answered", "102", clock()))  # after the answer
    await h.store(other_call("call_user_start", "fresh", "101", clock()))
    results = {(j.uuid, j.event): j.result for j in await h.attempt()}
    assert results.pop(("ended", "call_user_start:101")).startswith(
        "skipped: the call is already over (call_missed received)"
    )
    assert results.pop(("answered", "call_user_start:102")) == (
        "skipped: the call was already answered"
    )
    assert {r.startswith("skipped") for r in results.values()} == {False}
    await h.store(other_call("call_user_start", "stale", "101", clock()))
    clock.advance(61)
    [stale] = await h.attempt()
    assert stale.result == "skipped: stale: the event is 61 s old (live_max_age_seconds 60)"
    assert sorted(d["call"]["uuid"] for d in documents(route)) == ["answered", "fresh"]


async def test_a_failing_over_holds_the_call_log_back_only_while_useful(
    tmp_path, clock, storage_table
):
    from bridge.adapter.errors import RetryLater

    table = {"events": ["log_call", "create_task", "over"]}
    h = await AdapterHarness.open(tmp_path, "local", table, clock=clock, storage=storage_table)
    try:
        tries: list[float] = []

        async def over(live: Any) -> str:
            tries.append(clock())
            raise RetryLater("the CRM is down")

        h.adapter.over = over  # type: ignore[method-assign]
        await h.store(inbound("call_end", "101", clock()))
        seen: list[tuple[str, str, str | None]] = []
        for _ in range(40):
            for job in await h.attempt():
                seen.append((job.action, job.status, job.result))
            if any(a == "log_call" for a, _, _ in seen):
                break
            clock.advance(2)
        assert {a for a, _, _ in seen[:-2]} == {"over"}  # log_call waited behind it...
        assert seen[-2][0] == "over" and seen[-2][1] == "done"  # ...until it was put aside
        assert seen[-2][2].startswith("skipped: not retried past live_max_age_seconds")
        assert seen[-1][:2] == ("log_call", "done")
        assert 60 - 2 <= tries[-1] - tries[0] <= 60  # retried ~every 2 s for a minute, no more
        assert all(status != "dead" for _, status, _ in seen)
    finally:
        await h.close()


async def test_local_keeps_the_calls_in_progress(tmp_path, clock, storage_table):
    local = adapter_class("local")
    table = {"users": {"102": "u-102"}, "events": ["log_call", "ringing", "answered", "over"]}
    h = await AdapterHarness.open(tmp_path, "local", table, clock=clock, storage=storage_table)
    try:
        for ext in ("101", "102", "101"):  # 101 repeated by onlinePBX: a duplicate
            await h.store(inbound("call_user_start", ext, clock()))
        await h.attempt()
        [call] = await local.list_live(h.db)
        assert (call["state"], call["ringing"], call["uuid"]) == ("ringing", ["101", "102"], UUID)
        assert call["client"] == "+79221111123" and call["direction"] == "inbound"
        await h.store(inbound("call_answered", "102", clock()))
        await h.store(dict(inbound("call_user_start", "103", clock()), uuid="second"))
        await h.attempt()
        live = {c["uuid"]: c for c in await local.list_live(h.db)}
        call, second = live[UUID], live["second"]
        assert (call["state"], call["answered_by"], call["user_id"]) == ("answered", "102", "u-102")
        assert (second["state"], second["ringing"]) == ("ringing", ["103"])
        await h.store(inbound("call_end", "102", clock()))
        await h.attempt()
        assert [c["uuid"] for c in await local.list_live(h.db)] == ["second"]
        await h.store(inbound("call_user_start", "104", clock()))  # a ring after the end
        [late] = await h.attempt()
        assert late.result.startswith("skipped: the call is already over")
        assert [c["uuid"] for c in await local.list_live(h.db)] == ["second"]
        assert (await local.list_calls(h.db))[0]["uuid"] == UUID  # and the call is logged
    finally:
        await h.close()


async def test_calls_live_lists_the_calls_in_progress(tmp_path, clock, capsys):
    from bridge.cli import main

    h = await AdapterHarness.open(tmp_path, "local", {}, clock=clock)  # default events
    try:
        await h.store(inbound("call_user_start", "101", clock()))
        await h.store(inbound("call_user_start", "102", clock()))
        await h.attempt()
    finally:
        await h.close()
    cfg = tmp_path / "settings.toml"
    # No [adapters.*] table: the embedded default (local, live actions on) is what it lists.
    cfg.write_text(f'[storage]\npath = "{tmp_path / "local.db"}"\n')
    argv = ["--config", str(cfg), "calls", "--live"]
    assert await asyncio.to_thread(main, [*argv, "--json"]) == 0
    [call] = json.loads(capsys.readouterr().out)
    assert (call["uuid"], call["state"], call["ringing"]) == (UUID, "ringing", ["101", "102"])
    assert await asyncio.to_thread(main, argv) == 0
    shown = capsys.readouterr().out
    assert "101,102" in shown and "+79221111123" in shown and "ringing" in shown
